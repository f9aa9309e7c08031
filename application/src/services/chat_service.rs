//! Sending one message: credential → buckets in priority order → a valid token → the provider's
//! API → the outcome classified → the domain's next decision.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use llxprt_domain::failover::{BucketHealth, Decision, ExhaustedReport, Outcome};
use llxprt_domain::loadbalance::MemberFailure;
use llxprt_domain::precedence::{Credential, OAuthPlan};
use llxprt_domain::stats::{StatsDelta, StatsTotals};
use llxprt_domain::{
    cooldown_until, health_with_limits, BucketId, BucketName, ChatProvider, CooldownCause,
    FailoverRequest, Limits, OAuthProvider, ReportedLimits, Secret, UnixSeconds,
};

use crate::ports::{
    ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest, Clock, HealthStore, PersistenceError,
    StatsStore, UserPrompt,
};
use crate::services::auth_service::{AuthError, AuthService};
use crate::services::token_service::{TokenError, TokenService};

/// Why a message got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No key and no OAuth for the provider.
    #[error("no credentials for {0}: give a key (/key, --key or its environment variable) or run `/auth {oauth} enable`", oauth = .0.oauth_provider())]
    NoCredential(ChatProvider),
    /// No client is configured for the provider.
    #[error("no client is configured for {0}")]
    NoClient(ChatProvider),
    /// Every bucket is cooling down or needs a login: the domain's report of each bucket and
    /// the earliest time one is usable again. The message is the report's headline; a front
    /// end renders the buckets from the report.
    #[error("{}", ExhaustedReport::HEADLINE)]
    Exhausted {
        /// The provider whose buckets are exhausted.
        provider: OAuthProvider,
        /// Every bucket with its reason.
        report: ExhaustedReport,
    },
    /// The provider refused or failed, with an API key or after failover gave up.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The provider failed after the first piece of the reply was shown: the reply ends there,
    /// and the message is neither retried nor sent to another bucket (it would be answered, and
    /// counted, twice).
    #[error(
        "the reply was cut short ({0}); it was not sent again: send the message again to retry"
    )]
    CutShort(ChatError),
    /// The lazy login failed.
    #[error(transparent)]
    Login(#[from] AuthError),
    /// Reading tokens failed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl SendError {
    /// How a load balancer sees this failure of one of its members.
    pub fn member_failure(&self) -> MemberFailure {
        match self {
            Self::Exhausted { .. } => MemberFailure::BucketsExhausted,
            Self::NoCredential(_) | Self::Login(_) | Self::Token(_) | Self::NoClient(_) => {
                MemberFailure::NeedsLogin
            }
            Self::Chat(e) | Self::CutShort(e) => match e {
                ChatError::RateLimited { .. } => MemberFailure::RateLimited,
                ChatError::PaymentRequired { .. } => MemberFailure::PaymentRequired,
                ChatError::Unauthorized(_) => MemberFailure::Unauthorized,
                ChatError::Forbidden(_) => MemberFailure::Forbidden,
                ChatError::BadRequest { status, .. } => MemberFailure::ClientError(*status),
                ChatError::ModelRefused { .. } => MemberFailure::ClientError(400),
                ChatError::Refused { .. } => MemberFailure::Forbidden,
                ChatError::Blocked { status } => MemberFailure::ServerError(*status),
                ChatError::Server { status, .. } => MemberFailure::ServerError(*status),
                ChatError::Network(_) => MemberFailure::Network,
            },
        }
    }
}

/// Where one message goes: a provider, a model, and the credential precedence chose.
#[derive(Debug, Clone)]
pub struct SendTarget {
    /// The provider.
    pub provider: ChatProvider,
    /// The credential to use (from `resolve_credential`).
    pub credential: Credential,
    /// `failover.switch_at_percent`: a bucket whose latest reported figures put a window at or
    /// above this share is passed over until that window resets (100 moves on only from a
    /// window used up).
    pub switch_at_percent: u8,
}

impl SendTarget {
    /// A target with the default threshold: only a used-up window holds a bucket back.
    pub fn new(provider: ChatProvider, credential: Credential) -> Self {
        Self {
            provider,
            credential,
            switch_at_percent: 100,
        }
    }
}

/// The chat client of each provider.
#[derive(Clone, Default)]
pub struct ChatClients {
    clients: HashMap<ChatProvider, Arc<dyn ChatClient>>,
}

impl ChatClients {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a client under the provider it serves.
    pub fn register(&mut self, client: Arc<dyn ChatClient>) {
        self.clients.insert(client.provider(), client);
    }

    /// The client of a provider, if one is registered.
    pub fn get(&self, provider: ChatProvider) -> Option<Arc<dyn ChatClient>> {
        self.clients.get(&provider).cloned()
    }
}

/// Sends messages on whichever bucket still has quota, and counts every request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use llxprt_application::ports::{ChatError, ChatMessage, ChatRequest, OAuthFlow, Role, TokenStore};
/// use llxprt_application::services::{AuthService, ChatClients, ChatService, FlowRegistry, SendTarget, TokenService};
/// use llxprt_application::testkit::{
///     FakeChatClient, FakeOAuthFlow, ManualClock, MemoryStatsStore, MemoryTokenStore, ScriptedPrompt,
/// };
/// use llxprt_domain::{resolve_credential, BucketId, BucketName, ChatProvider, CredentialSources, OAuthProvider, UnixSeconds};
///
/// let clock = Arc::new(ManualClock::at(UnixSeconds(1_767_225_600)));
/// let store = Arc::new(MemoryTokenStore::new());
/// let flow = Arc::new(FakeOAuthFlow::new(OAuthProvider::Anthropic, clock.clone()));
/// let mut flows = FlowRegistry::new();
/// flows.register(flow.clone());
/// let claude = Arc::new(FakeChatClient::new(ChatProvider::Anthropic));
/// let mut clients = ChatClients::new();
/// clients.register(claude.clone());
/// let stats = Arc::new(MemoryStatsStore::new());
/// let tokens = Arc::new(TokenService::new(store.clone(), flows.clone(), clock.clone()));
/// let auth = Arc::new(AuthService::new(store.clone(), flows));
/// let chat = ChatService::new(tokens, auth, clients, clock.clone(), stats);
///
/// // Two accounts signed in; the first is out of quota for a minute.
/// let buckets = vec![BucketName::parse("work1").unwrap(), BucketName::parse("work2").unwrap()];
/// let prompt = ScriptedPrompt::new();
/// for bucket in &buckets {
///     let token = flow.login(&prompt).await.unwrap();
///     store.save(&BucketId::new(OAuthProvider::Anthropic, bucket.clone()), &token).await.unwrap();
/// }
/// let limited = ChatError::RateLimited {
///     retry_after_secs: Some(60),
///     reset_at: None,
///     limits: Default::default(),
/// };
/// claude.refuse_next("anthropic/work1", 1, limited);
///
/// let credential = resolve_credential(CredentialSources {
///     provider: ChatProvider::Anthropic,
///     command_line: None,
///     profile_key: None,
///     settings_key: None,
///     env: Vec::new(),
///     oauth_enabled: false,
///     profile_buckets: buckets,
/// });
/// let target = SendTarget::new(ChatProvider::Anthropic, credential);
/// let request = ChatRequest {
///     model: "claude-sonnet-4-5".to_owned(),
///     messages: vec![ChatMessage { role: Role::User, text: "hello".to_owned() }],
/// };
/// let reply = chat.send(&target, &request, &prompt).await.unwrap();
/// assert_eq!(reply.text, "[anthropic/work2] you said: hello");
/// assert_eq!(claude.senders(), ["anthropic/work1", "anthropic/work2"]);
///
/// // The next message skips the cooling account without asking it.
/// chat.send(&target, &request, &prompt).await.unwrap();
/// assert_eq!(claude.senders().last().map(String::as_str), Some("anthropic/work2"));
/// assert_eq!(claude.senders().len(), 3);
/// # }
/// ```
pub struct ChatService {
    tokens: Arc<TokenService>,
    auth: Arc<AuthService>,
    clients: ChatClients,
    clock: Arc<dyn Clock>,
    health: Mutex<HashMap<BucketId, BucketHealth>>,
    /// The latest limits each bucket's provider reported.
    limits: Mutex<HashMap<BucketId, ReportedLimits>>,
    shared_health: Option<Arc<dyn HealthStore>>,
    /// The last health record a request left running after its answer; each waits for the one
    /// before it, so records land in the order the requests learned them.
    health_record: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: StatsSaver,
}

impl ChatService {
    /// A service over the token and auth services, the chat clients, a clock and a stats store.
    pub fn new(
        tokens: Arc<TokenService>,
        auth: Arc<AuthService>,
        clients: ChatClients,
        clock: Arc<dyn Clock>,
        stats: Arc<dyn StatsStore>,
    ) -> Self {
        Self {
            tokens,
            auth,
            clients,
            clock,
            health: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            shared_health: None,
            health_record: Mutex::new(None),
            stats: StatsSaver::new(stats),
        }
    }

    /// Keeps bucket health in `store` too, so that other processes (the next `llxprt -p`, a
    /// `/auth P status` elsewhere) leave a cooling bucket alone and see one that needs a login.
    /// Without it, health lives in this process only.
    pub fn with_health_store(mut self, store: Arc<dyn HealthStore>) -> Self {
        self.shared_health = Some(store);
        self
    }

    /// Reads what every process recorded about the buckets' health, replacing what this process
    /// knew. Health is advisory: when it cannot be read, this process goes on with its own.
    pub async fn load_shared_health(&self) {
        let Some(store) = &self.shared_health else {
            return;
        };
        if self.health_record_pending() {
            // What this process learned is not in the file yet: keep it until it is.
            return;
        }
        match store.load().await {
            Ok(stored) => *self.health_map() = stored,
            Err(error) => tracing::warn!(%error, "could not read the buckets' health"),
        }
        // Like the health: this process's own records have landed (checked above), so the
        // store's figures are at least as new as this process's.
        match store.load_limits().await {
            Ok(stored) => *lock(&self.limits) = stored,
            Err(error) => tracing::warn!(%error, "could not read the buckets' limits"),
        }
    }

    /// What this process knows about a bucket's health (rate limits, needed logins).
    pub fn health(&self, bucket: &BucketId) -> BucketHealth {
        self.health_map()
            .get(bucket)
            .copied()
            .unwrap_or(BucketHealth::Usable)
    }

    /// A bucket's health for the next request: what is known against it, and, when nothing
    /// is, whether its latest reported figures hold it back under `switch_at_percent`
    /// (`[cooldown]` until the binding window resets).
    pub fn health_for_next_request(
        &self,
        bucket: &BucketId,
        switch_at_percent: u8,
    ) -> BucketHealth {
        let known = self.health(bucket);
        let limits = lock(&self.limits);
        health_with_limits(
            known,
            limits.get(bucket),
            switch_at_percent,
            self.clock.now(),
        )
    }

    /// The latest limits the provider reported for a bucket, with when they were seen.
    pub fn limits(&self, bucket: &BucketId) -> Option<ReportedLimits> {
        lock(&self.limits).get(bucket).cloned()
    }

    /// The latest limits of every bucket whose provider reported any.
    pub fn all_limits(&self) -> Vec<(BucketId, ReportedLimits)> {
        lock(&self.limits)
            .iter()
            .map(|(bucket, limits)| (bucket.clone(), limits.clone()))
            .collect()
    }

    /// Forgets what was known against a bucket, its cooldown and its reported figures, after
    /// the user logged it in again or lifted it by hand (here and for other processes).
    pub async fn mark_usable(&self, bucket: &BucketId) {
        self.health_map().remove(bucket);
        lock(&self.limits).remove(bucket);
        // After any record still running, so that it cannot land on top of this one.
        let pending = lock(&self.health_record).take();
        if let Some(pending) = pending {
            let _ = pending.await;
        }
        if let Some(store) = &self.shared_health {
            let forgotten = store
                .record_with_limits(
                    &[(bucket.clone(), BucketHealth::Usable)],
                    &[(bucket.clone(), None)],
                )
                .await;
            if let Err(error) = forgotten {
                tracing::warn!(%error, "could not forget the bucket's health and limits");
            }
        }
    }

    /// The statistics of every bucket: the stored totals, once this process's counts are saved,
    /// plus any counts the store refused.
    ///
    /// # Errors
    /// [`PersistenceError`] when the stored totals cannot be read.
    pub async fn statistics(&self) -> Result<StatsTotals, PersistenceError> {
        self.flush_statistics().await;
        let mut totals = self.stats.store.load().await?;
        totals.apply(lock(&self.stats.unsaved).pending());
        Ok(totals)
    }

    /// Waits until the counts of every answer given so far are saved. Answers do not wait for
    /// their statistics; call this before the process exits. A count the store refuses is kept
    /// for the next save (and logged), never lost silently.
    pub async fn flush_statistics(&self) {
        self.stats.flush().await;
        // And the health a request learned: answers do not wait for it either.
        let record = lock(&self.health_record).take();
        if let Some(record) = record {
            if let Err(error) = record.await {
                tracing::warn!(%error, "a bucket health record did not finish");
            }
        }
    }

    /// Records changed health and new figures for other processes after the answer (the file
    /// store's record is a locked, fsynced write: milliseconds on a busy disk). Flushed with the
    /// statistics.
    fn record_health_in_background(
        &self,
        changes: Vec<(BucketId, BucketHealth)>,
        limits: Vec<(BucketId, Option<ReportedLimits>)>,
    ) {
        let Some(store) = self.shared_health.clone() else {
            return;
        };
        if changes.is_empty() && limits.is_empty() {
            return;
        }
        let mut last = lock(&self.health_record);
        let previous = last.take();
        *last = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Err(error) = store.record_with_limits(&changes, &limits).await {
                tracing::warn!(%error, "could not save the buckets' health and limits");
            }
        }));
    }

    /// Whether a health record of this process has not landed yet: the file may be older than
    /// what this process knows.
    fn health_record_pending(&self) -> bool {
        lock(&self.health_record)
            .as_ref()
            .is_some_and(|record| !record.is_finished())
    }

    /// Sends `request` to `target`, with failover over the buckets when it uses OAuth. Pieces of
    /// a streamed reply go to `prompt` as they arrive.
    ///
    /// # Errors
    /// [`SendError`]: no credential, every bucket exhausted, or the provider's refusal.
    pub async fn send(
        &self,
        target: &SendTarget,
        request: &ChatRequest,
        prompt: &dyn UserPrompt,
    ) -> Result<ChatReply, SendError> {
        let client = self
            .clients
            .get(target.provider)
            .ok_or(SendError::NoClient(target.provider))?;
        // Whether a piece of the reply was shown: from then on a failure ends the reply.
        let shown = AtomicBool::new(false);
        let on_text = |text: &str| {
            if !text.is_empty() {
                shown.store(true, Ordering::SeqCst);
            }
            prompt.stream(text);
        };
        let result = match &target.credential {
            Credential::None => Err(SendError::NoCredential(target.provider)),
            Credential::ApiKey { key, .. } => client
                .send(request, ChatAuth::ApiKey(key), &on_text)
                .await
                .map_err(SendError::from),
            Credential::OAuth(plan) => {
                let streaming = Streaming {
                    on_text: &on_text,
                    shown: &shown,
                };
                let run = RunOf {
                    plan,
                    switch_at_percent: target.switch_at_percent,
                };
                self.send_with_failover(client.as_ref(), run, request, prompt, streaming)
                    .await
            }
        };
        self.stats.save_in_background();
        result.map_err(|error| match error {
            SendError::Chat(cause) if shown.load(Ordering::SeqCst) => SendError::CutShort(cause),
            other => other,
        })
    }

    async fn send_with_failover(
        &self,
        client: &dyn ChatClient,
        of: RunOf<'_>,
        request: &ChatRequest,
        prompt: &dyn UserPrompt,
        streaming: Streaming<'_>,
    ) -> Result<ChatReply, SendError> {
        // The failover reads each bucket's token anyway, so whether anything is logged in is
        // only asked again when it found no token at all: a request then reads its token once.
        let plan = of.plan;
        let mut first = self
            .run_failover(client, of, request, prompt, streaming, true)
            .await;
        let run = if first.found_only_missing_tokens()
            && self
                .log_in_lazily_when_nothing_is_logged_in(plan, prompt)
                .await?
        {
            // The first run tried no provider and changed nothing; it is forgotten whole, as if
            // the login had come before it.
            first.tally.discarded = true;
            drop(first);
            self.run_failover(client, of, request, prompt, streaming, false)
                .await
        } else {
            for skipped in first.deferred_skips.iter().flatten() {
                prompt.show_error(skipped);
            }
            first
        };
        let provider = plan.provider();
        let id = |name: &BucketName| BucketId::new(provider, name.clone());
        // Only what this request changed is recorded, so it cannot undo what another process
        // learned meanwhile about a bucket this request did not touch.
        let mut changes = Vec::new();
        {
            let mut health = self.health_map();
            for (name, state) in run.tally.machine.health() {
                // Held back by its figures: that follows from the figures kept with the
                // health, so it is not recorded as a cooldown of its own (an early reset, a new
                // threshold or new figures end it at once).
                if matches!(
                    state,
                    BucketHealth::CoolingUntil {
                        cause: CooldownCause::NearLimit,
                        ..
                    }
                ) {
                    continue;
                }
                let before = health.insert(id(name), *state);
                if before.unwrap_or(BucketHealth::Usable) != *state {
                    changes.push((id(name), *state));
                }
            }
        }
        let FailoverRun {
            tally,
            decision,
            reply,
            last_error,
            learned,
            ..
        } = run;
        // The request is over: its counts go to the statistics now.
        drop(tally);
        self.record_health_in_background(changes, learned);
        match (reply, decision) {
            (Some(reply), _) => Ok(reply),
            (None, _) if streaming.shown.load(Ordering::SeqCst) => {
                Err(last_error.unwrap_or_else(|| {
                    SendError::Chat(ChatError::Network("the reply stopped".to_owned()))
                }))
            }
            (None, Decision::Exhausted(report)) => Err(SendError::Exhausted { provider, report }),
            (None, _) => Err(last_error.unwrap_or_else(|| {
                SendError::Chat(ChatError::Network("the request failed".to_owned()))
            })),
        }
    }

    /// Runs the failover machine over the plan's buckets until a bucket answers or none is left.
    /// With `defer_skips`, the "Skipping" lines of buckets without a token are held back for as
    /// long as no bucket has shown a token, because a lazy login may make them moot.
    async fn run_failover(
        &self,
        client: &dyn ChatClient,
        of: RunOf<'_>,
        request: &ChatRequest,
        prompt: &dyn UserPrompt,
        streaming: Streaming<'_>,
        defer_skips: bool,
    ) -> FailoverRun<'_> {
        let on_text = streaming.on_text;
        let plan = of.plan;
        let provider = plan.provider();
        let id = |name: &BucketName| BucketId::new(provider, name.clone());
        self.load_shared_health().await;
        let buckets = plan
            .buckets()
            .iter()
            .map(|name| {
                let health = self.health_for_next_request(&id(name), of.switch_at_percent);
                (name.clone(), health)
            })
            .collect();
        let (mut machine, mut decision) = FailoverRequest::start(buckets, self.clock.now());
        machine.treat_repeated_unauthorized_as(provider.refusal_on_repeated_unauthorized());
        let mut tally = Tally {
            handoff: &self.stats.handoff,
            clock: self.clock.as_ref(),
            provider,
            machine,
            in_flight: None,
            discarded: false,
        };
        let mut last_error: Option<SendError> = None;
        let mut used_token: HashMap<BucketName, Secret> = HashMap::new();
        let mut deferred_skips = defer_skips.then(Vec::new);
        let mut learned = Vec::new();
        // The buckets this request already said it passed over.
        let mut announced = HashSet::new();
        let reply = loop {
            let (outcome, reply) = match &decision {
                Decision::Use(name) => {
                    let bucket = id(name);
                    match self.tokens.valid_token(&bucket).await {
                        Ok(token) => {
                            show_all(prompt, deferred_skips.take());
                            let passed = self.passed_over(
                                provider,
                                &tally.machine,
                                name,
                                &mut announced,
                                of.switch_at_percent,
                            );
                            show_all(prompt, Some(passed));
                            used_token.insert(name.clone(), token.access_token.clone());
                            tally.in_flight = Some(bucket.clone());
                            let attempted = self
                                .attempt(
                                    client,
                                    &bucket,
                                    &token,
                                    request,
                                    on_text,
                                    &mut last_error,
                                    &mut learned,
                                )
                                .await;
                            tally.in_flight = None;
                            attempted
                        }
                        Err(e) => {
                            let (outcome, skipped) = token_outcome(&bucket, e);
                            match (&outcome, &mut deferred_skips) {
                                (Outcome::NoToken, Some(deferred)) => deferred.push(skipped),
                                _ => {
                                    show_all(prompt, deferred_skips.take());
                                    prompt.show_error(&skipped);
                                }
                            }
                            (outcome, None)
                        }
                    }
                }
                Decision::RefreshThenRetry(name) => {
                    let bucket = id(name);
                    let rejected = used_token
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| Secret::new(""));
                    match self.tokens.refresh_rejected(&bucket, &rejected).await {
                        Ok(token) => {
                            tally.in_flight = Some(bucket.clone());
                            let attempted = self
                                .attempt(
                                    client,
                                    &bucket,
                                    &token,
                                    request,
                                    on_text,
                                    &mut last_error,
                                    &mut learned,
                                )
                                .await;
                            tally.in_flight = None;
                            attempted
                        }
                        Err(e) => {
                            let (outcome, skipped) = token_outcome(&bucket, e);
                            prompt.show_error(&skipped);
                            (outcome, None)
                        }
                    }
                }
                Decision::Done | Decision::Exhausted(_) | Decision::GiveUp(_) => break None,
            };
            let tried = match &decision {
                Decision::Use(name) | Decision::RefreshThenRetry(name) => Some(name.clone()),
                _ => None,
            };
            decision = tally.machine.record(outcome, self.clock.now());
            // A refused bucket is skipped from now on, so this is the one time the user hears
            // of it (until `/auth P status` or an exhausted report).
            if let Some(notice) = tried
                .as_ref()
                .and_then(|name| refusal_notice(provider, &tally.machine, name))
            {
                prompt.show_error(&notice);
            }
            // Out of quota says what the account needs (Anthropic's extra usage), which the
            // exhausted report's short reason would not.
            if let (Outcome::PaymentRequired { .. }, Some(SendError::Chat(error)), Some(name)) =
                (outcome, &last_error, &tried)
            {
                prompt.show_error(&format!("{provider}/{name}: {error}"));
            }
            // Once a piece of the reply is shown, another bucket would answer it a second time.
            if reply.is_some() || streaming.shown.load(Ordering::SeqCst) {
                break reply;
            }
        };
        FailoverRun {
            tally,
            decision,
            reply,
            last_error,
            deferred_skips,
            learned,
        }
    }

    /// Lazy login: the first request for a provider none of whose buckets holds a token runs
    /// the flow for the first bucket. Once any bucket holds a token, a bucket without one is
    /// skipped and reported instead, so no browser pops up in the middle of a conversation.
    /// Returns whether it logged in.
    async fn log_in_lazily_when_nothing_is_logged_in(
        &self,
        plan: &OAuthPlan,
        prompt: &dyn UserPrompt,
    ) -> Result<bool, SendError> {
        let provider = plan.provider();
        for name in plan.buckets() {
            let bucket = BucketId::new(provider, name.clone());
            // A corrupt file or an unreadable one counts as "something is there": the user
            // must act on it, a silent login must not overwrite it.
            if !matches!(self.auth.stored_token(&bucket).await, Ok(None)) {
                return Ok(false);
            }
        }
        let Some(first) = plan.buckets().first() else {
            return Ok(false);
        };
        let bucket = BucketId::new(provider, first.clone());
        prompt.show(&format!(
            "{provider} is not logged in yet; signing in to {bucket} now."
        ));
        self.auth.login(&bucket, prompt).await?;
        self.mark_usable(&bucket).await;
        Ok(true)
    }

    /// Sends once with a bucket's token and classifies the result (the request is counted from
    /// the failover record afterwards). The limits the answer reported are kept, and pushed to
    /// `learned` when other processes should hear of them.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        client: &dyn ChatClient,
        bucket: &BucketId,
        token: &llxprt_domain::Token,
        request: &ChatRequest,
        on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
        last_error: &mut Option<SendError>,
        learned: &mut Vec<(BucketId, Option<ReportedLimits>)>,
    ) -> (Outcome, Option<ChatReply>) {
        let now = self.clock.now();
        let auth = ChatAuth::OAuth { bucket, token };
        let sent = client.send(request, auth, on_text).await;
        let reported = match &sent {
            Ok(reply) => &reply.limits,
            Err(ChatError::RateLimited { limits, .. }) => limits,
            Err(_) => &Limits::default(),
        };
        if let Some(news) = self.keep_limits(bucket, reported) {
            learned.push((bucket.clone(), Some(news)));
        }
        match sent {
            Ok(reply) => (Outcome::Success, Some(reply)),
            Err(error) => {
                let outcome = classify(&error, now);
                tracing::info!(%bucket, %error, "request failed");
                *last_error = Some(SendError::Chat(error));
                (outcome, None)
            }
        }
    }

    /// Keeps the limits an answer reported for `bucket`; returns them when other processes
    /// should hear of them: when they differ from the figures kept, or those are older than
    /// [`LIMITS_REFRESH_SECS`] (so that the age `/stats quota` shows stays true without a
    /// write at every answer).
    fn keep_limits(&self, bucket: &BucketId, reported: &Limits) -> Option<ReportedLimits> {
        if reported.is_empty() {
            return None;
        }
        let now = self.clock.now();
        let mut known = lock(&self.limits);
        let news = match known.get(bucket) {
            Some(kept) if kept.limits == *reported => {
                now.seconds_since(kept.seen_at) >= LIMITS_REFRESH_SECS
            }
            _ => true,
        };
        if !news {
            return None;
        }
        let seen = reported.clone().seen_at(now);
        known.insert(bucket.clone(), seen.clone());
        Some(seen)
    }

    /// The lines telling the user which buckets ahead of `chosen` this request skips or leaves
    /// and why ("anthropic/work1 at 96% of its 5h window until 18:00; using work2"), each
    /// bucket once a request; `announced` holds the buckets already told of.
    fn passed_over(
        &self,
        provider: OAuthProvider,
        machine: &FailoverRequest,
        chosen: &BucketName,
        announced: &mut HashSet<BucketName>,
        switch_at_percent: u8,
    ) -> Vec<String> {
        let health = machine.health();
        let Some(at) = health.iter().position(|(name, _)| name == chosen) else {
            return Vec::new();
        };
        let now = self.clock.now();
        let mut lines = Vec::new();
        for (name, state) in health.iter().take(at) {
            let BucketHealth::CoolingUntil { until, cause } = *state else {
                continue;
            };
            if until <= now || !announced.insert(name.clone()) {
                continue;
            }
            let why = match cause {
                CooldownCause::NearLimit => self
                    .limits(&BucketId::new(provider, name.clone()))
                    .and_then(|l| l.binding_window(switch_at_percent, now))
                    .map(|w| format!("at {}% of its {} window", w.used_percent, w.name))
                    .unwrap_or_else(|| cause.to_string()),
                other => other.to_string(),
            };
            lines.push(format!(
                "{provider}/{name} {why} until {}; using {chosen}",
                self.clock.when(until)
            ));
        }
        lines
    }

    fn health_map(&self) -> std::sync::MutexGuard<'_, HashMap<BucketId, BucketHealth>> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How old the kept figures of a bucket may grow before an answer that reports the same ones
/// records them again.
const LIMITS_REFRESH_SECS: i64 = 60;

/// What one request's failover runs over: the plan's buckets and the threshold.
#[derive(Clone, Copy)]
struct RunOf<'a> {
    plan: &'a OAuthPlan,
    switch_at_percent: u8,
}

/// Where the pieces of a streamed reply go, and whether one was shown yet.
#[derive(Clone, Copy)]
struct Streaming<'a> {
    on_text: &'a (dyn for<'s> Fn(&'s str) + Send + Sync),
    shown: &'a AtomicBool,
}

/// One pass of the failover machine over a plan's buckets.
struct FailoverRun<'a> {
    tally: Tally<'a>,
    decision: Decision,
    reply: Option<ChatReply>,
    last_error: Option<SendError>,
    /// The "Skipping" lines not shown yet: `Some` while every bucket tried had no token.
    deferred_skips: Option<Vec<String>>,
    /// The figures the answers reported that other processes should hear of.
    learned: Vec<(BucketId, Option<ReportedLimits>)>,
}

impl FailoverRun<'_> {
    /// Whether no bucket answered because every bucket tried had no token (a lazy login may
    /// be due).
    fn found_only_missing_tokens(&self) -> bool {
        self.reply.is_none() && self.deferred_skips.is_some()
    }
}

/// The line telling the user that the provider has just refused `name` to llxprt, if the last
/// outcome did that.
fn refusal_notice(
    provider: OAuthProvider,
    machine: &FailoverRequest,
    name: &BucketName,
) -> Option<String> {
    let cause = machine
        .health()
        .iter()
        .find_map(|(n, health)| match health {
            BucketHealth::Refused { cause } if n == name => Some(*cause),
            _ => None,
        })?;
    let login = if name.is_default() {
        format!("/auth {provider} login")
    } else {
        format!("/auth {provider} login {name}")
    };
    Some(format!(
        "{provider}/{name} is refused by the provider ({cause}); it is skipped until `{login}` signs in again. Instead, {}.",
        cause.what_works()
    ))
}

fn show_all(prompt: &dyn UserPrompt, lines: Option<Vec<String>>) {
    for line in lines.into_iter().flatten() {
        prompt.show_error(&line);
    }
}

/// The failover outcome of a bucket whose token could not be had, and the line telling the
/// user it is skipped.
fn token_outcome(bucket: &BucketId, error: TokenError) -> (Outcome, String) {
    let outcome = match &error {
        TokenError::NotLoggedIn(_) => Outcome::NoToken,
        TokenError::NeedsLogin { .. } => Outcome::RefreshFailed { needs_login: true },
        TokenError::Transient { .. } | TokenError::Store(_) | TokenError::NoFlow(_) => {
            Outcome::RefreshFailed { needs_login: false }
        }
    };
    (outcome, format!("Skipping {bucket}: {error}"))
}

/// One request's attempts, counted into the unsaved statistics when it is dropped: at its end,
/// or earlier when the request is cancelled (Ctrl-C drops it). A cancelled request still counts
/// what it sent, the attempt in flight included, since the provider may have counted it too.
struct Tally<'a> {
    handoff: &'a mpsc::Sender<StatsDelta>,
    clock: &'a dyn Clock,
    provider: OAuthProvider,
    machine: FailoverRequest,
    /// The bucket whose request is on its way, not yet recorded in `machine`.
    in_flight: Option<BucketId>,
    /// Set when the run is thrown away whole (it sent nothing; a lazy login came after it).
    discarded: bool,
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        if self.discarded {
            return;
        }
        let now = self.clock.now();
        let mut delta = StatsDelta::new();
        delta.record_failover_request(self.provider, &self.machine, now);
        if let Some(bucket) = &self.in_flight {
            delta.record_request(bucket, now);
        }
        // Fails only when the service is gone, and its counts with it.
        let _ = self.handoff.send(delta);
    }
}

/// This process's request counts on their way to the statistics store, saved after the answers
/// rather than before them: the file store fsyncs every save, which would otherwise be part of
/// every answer's wait. A request hands its counts over without a lock (a send on `std`'s
/// lock-free channel); at most one save runs at a time and takes every count handed over
/// before it saves.
struct StatsSaver {
    store: Arc<dyn StatsStore>,
    handoff: mpsc::Sender<StatsDelta>,
    /// Touched by the saves and the flush only, never by a request.
    unsaved: Arc<Mutex<Unsaved>>,
    /// Whether a background save is running (it takes new counts before it ends).
    saving: Arc<AtomicBool>,
    /// The save running in the background, if any.
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Unsaved {
    /// Counts a refused save kept, and counts taken from the hand-off and not saved yet.
    delta: StatsDelta,
    handed: mpsc::Receiver<StatsDelta>,
}

impl Unsaved {
    /// Every count not saved yet.
    fn pending(&mut self) -> &StatsDelta {
        while let Ok(delta) = self.handed.try_recv() {
            self.delta.merge(&delta);
        }
        &self.delta
    }

    fn take(&mut self) -> StatsDelta {
        self.pending();
        self.delta.take()
    }
}

impl StatsSaver {
    fn new(store: Arc<dyn StatsStore>) -> Self {
        let (handoff, handed) = mpsc::channel();
        Self {
            store,
            handoff,
            unsaved: Arc::new(Mutex::new(Unsaved {
                delta: StatsDelta::new(),
                handed,
            })),
            saving: Arc::default(),
            running: Mutex::new(None),
        }
    }

    fn save_in_background(&self) {
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, shared, saving) = (
            self.store.clone(),
            self.unsaved.clone(),
            self.saving.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let delta = lock(&shared).take();
                if delta.is_empty() {
                    saving.store(false, Ordering::Release);
                    // Counts handed over after the take and before the flag fell would wait for
                    // the next request: take them now, unless a new save already runs.
                    let late = lock(&shared).take();
                    if late.is_empty() {
                        return;
                    }
                    if saving.swap(true, Ordering::AcqRel) {
                        lock(&shared).delta.merge(&late);
                        return;
                    }
                    if !save(store.as_ref(), &shared, late).await {
                        saving.store(false, Ordering::Release);
                        return;
                    }
                    continue;
                }
                if !save(store.as_ref(), &shared, delta).await {
                    saving.store(false, Ordering::Release);
                    return;
                }
            }
        });
        *lock(&self.running) = Some(task);
    }

    async fn flush(&self) {
        loop {
            let running = lock(&self.running).take();
            let Some(task) = running else { break };
            if let Err(error) = task.await {
                tracing::warn!(%error, "a statistics save did not finish");
            }
        }
        // What a failed save put back, or what no save has taken yet.
        let delta = lock(&self.unsaved).take();
        if !delta.is_empty() {
            save(self.store.as_ref(), &self.unsaved, delta).await;
        }
    }
}

/// Adds `delta` to the store; when the store refuses, keeps it in `unsaved` for the next save
/// rather than lose it. Returns whether it was saved.
async fn save(store: &dyn StatsStore, unsaved: &Mutex<Unsaved>, delta: StatsDelta) -> bool {
    match store.add(&delta).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "could not save bucket statistics");
            let mut unsaved = lock(unsaved);
            let later = unsaved.delta.take();
            unsaved.delta = delta;
            unsaved.delta.merge(&later);
            false
        }
    }
}

/// Poisoning is ignored: every change made under these locks is a single call, so a holder that
/// panicked cannot have left the data half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The failover outcome of a provider's refusal at `now`.
fn classify(error: &ChatError, now: UnixSeconds) -> Outcome {
    let after =
        |retry_after: Option<u64>| retry_after.map(|s| now + i64::try_from(s).unwrap_or(i64::MAX));
    let reset = |retry_after: Option<u64>, reset_at: Option<i64>| {
        reset_at.map(UnixSeconds).or_else(|| after(retry_after))
    };
    match error {
        ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits,
        } => {
            // The largest of the signals, but never past the reset of the window that binds
            // (a `retry-after` of a day and a half has been seen on a 5-hour window).
            let used_up = limits.used_up_until(now);
            let window_reset = reset_at.map(UnixSeconds).or(used_up);
            let signals = [after(*retry_after_secs), reset_at.map(UnixSeconds), used_up];
            Outcome::RateLimited {
                reset_at: cooldown_until(signals.into_iter().flatten(), window_reset, now),
            }
        }
        ChatError::PaymentRequired {
            retry_after_secs, ..
        } => Outcome::PaymentRequired {
            reset_at: reset(*retry_after_secs, None),
        },
        ChatError::Unauthorized(_) => Outcome::Unauthorized,
        ChatError::Forbidden(_) => Outcome::Forbidden,
        ChatError::Refused { cause, .. } => Outcome::Refused { cause: *cause },
        // Not the bucket's fault: the error is shown, no bucket is marked.
        ChatError::BadRequest { .. }
        | ChatError::ModelRefused { .. }
        | ChatError::Blocked { .. }
        | ChatError::Server { .. }
        | ChatError::Network(_) => Outcome::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ChatMessage, Role, TokenStore};
    use crate::services::FlowRegistry;
    use crate::test_support::{
        flow_with, token, MapStore, MemoryHealth, MemoryStats, MockOAuthFlow, MovableClock,
        RecordingPrompt, ScriptedClient, NOW,
    };
    use llxprt_domain::precedence::{resolve_credential, CredentialSources};
    use llxprt_domain::OAuthProvider;
    use std::time::Duration;

    struct Fixture {
        store: Arc<MapStore>,
        client: Arc<ScriptedClient>,
        clock: Arc<MovableClock>,
        stats: Arc<MemoryStats>,
        service: ChatService,
    }

    fn fixture(flow: MockOAuthFlow) -> Fixture {
        fixture_with(flow, None)
    }

    /// With a gate, every statistics save waits until the test adds permits to it.
    fn fixture_with(flow: MockOAuthFlow, gate: Option<Arc<tokio::sync::Semaphore>>) -> Fixture {
        let store = Arc::new(MapStore::default());
        let clock = Arc::new(MovableClock::at(NOW));
        let mut flows = FlowRegistry::new();
        flow_with(&mut flows, flow);
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            flows.clone(),
            clock.clone(),
        ));
        let auth = Arc::new(AuthService::new(store.clone(), flows));
        let client = Arc::new(ScriptedClient::default());
        let mut clients = ChatClients::new();
        clients.register(client.clone());
        let stats = Arc::new(MemoryStats::default());
        let stats_store: Arc<dyn StatsStore> = match gate {
            Some(gate) => Arc::new(GatedStats {
                gate,
                memory: stats.clone(),
            }),
            None => stats.clone(),
        };
        let service = ChatService::new(tokens, auth, clients, clock.clone(), stats_store);
        Fixture {
            store,
            client,
            clock,
            stats,
            service,
        }
    }

    struct GatedStats {
        gate: Arc<tokio::sync::Semaphore>,
        memory: Arc<MemoryStats>,
    }

    #[async_trait::async_trait]
    impl StatsStore for GatedStats {
        async fn load(&self) -> Result<StatsTotals, PersistenceError> {
            self.memory.load().await
        }
        async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
            let _permit = self.gate.acquire().await.unwrap();
            self.memory.add(delta).await
        }
    }

    fn b(name: &str) -> BucketName {
        BucketName::parse(name).unwrap()
    }

    fn id(name: &str) -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, b(name))
    }

    async fn log_in(f: &Fixture, name: &str) {
        let t = token(
            &format!("at-{name}"),
            Some(&format!("rt-{name}")),
            NOW + 100_000,
        );
        f.store.save(&id(name), &t).await.unwrap();
    }

    fn oauth_target(buckets: &[&str]) -> SendTarget {
        target(None, buckets)
    }

    fn target(key: Option<&str>, buckets: &[&str]) -> SendTarget {
        SendTarget::new(
            ChatProvider::Anthropic,
            resolve_credential(CredentialSources {
                provider: ChatProvider::Anthropic,
                command_line: None,
                profile_key: None,
                settings_key: None,
                env: vec![("ANTHROPIC_API_KEY", key.map(Secret::new))],
                oauth_enabled: true,
                profile_buckets: buckets.iter().map(|n| b(n)).collect(),
            }),
        )
    }

    fn hello() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                text: "hello".into(),
            }],
        }
    }

    fn limited(seconds: u64) -> Result<String, ChatError> {
        Err(ChatError::RateLimited {
            retry_after_secs: Some(seconds),
            reset_at: None,
            limits: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_rate_limited_bucket_fails_over_at_once_and_rejoins_after_its_reset() {
        let f = fixture(MockOAuthFlow::new());
        for n in ["w1", "w2", "w3"] {
            log_in(&f, n).await;
        }
        f.client.answer("at-w1", vec![limited(120)]);
        let prompt = RecordingPrompt::default();
        let t = oauth_target(&["w1", "w2", "w3"]);
        let reply = f.service.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        // While w1 cools down it receives nothing.
        let reply = f.service.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        f.clock.advance(121);
        let reply = f.service.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(reply.text, "ok:at-w1");
        assert_eq!(
            *f.client.calls.lock().unwrap(),
            vec!["at-w1", "at-w2", "at-w2", "at-w1"]
        );
        // Leaving w1, then skipping it, each said in one line.
        let until = f.clock.time_of_day(UnixSeconds(NOW + 120));
        let line = format!("anthropic/w1 rate limited until {until}; using w2");
        let shown = prompt.0.lock().unwrap().clone();
        assert_eq!(shown.iter().filter(|l| **l == line).count(), 2, "{shown:?}");
        f.service.flush_statistics().await;
        let totals = f.stats.0.lock().unwrap().clone();
        let w1 = totals.get(&id("w1")).unwrap();
        assert_eq!((w1.requests, w1.rate_limits, w1.failovers), (2, 1, 1));
        assert_eq!(totals.get(&id("w2")).unwrap().requests, 2);
    }

    #[tokio::test]
    async fn an_answer_does_not_wait_for_its_statistics_and_a_flush_saves_them() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let f = fixture_with(MockOAuthFlow::new(), Some(gate.clone()));
        log_in(&f, "w1").await;
        let t = oauth_target(&["w1"]);
        // The gate opens only after the answers: a send that waited for its save would hang,
        // which the bound turns into a failure.
        for _ in 0..2 {
            let sent = tokio::time::timeout(
                Duration::from_secs(30),
                f.service.send(&t, &hello(), &RecordingPrompt::default()),
            )
            .await;
            assert_eq!(sent.unwrap().unwrap().text, "ok:at-w1");
        }
        assert!(f.stats.0.lock().unwrap().get(&id("w1")).is_none());
        gate.add_permits(100);
        f.service.flush_statistics().await;
        assert_eq!(
            f.stats.0.lock().unwrap().get(&id("w1")).unwrap().requests,
            2
        );
        // Saved counts are not counted a second time as unsaved ones.
        let totals = f.service.statistics().await.unwrap();
        assert_eq!(totals.get(&id("w1")).unwrap().requests, 2);
    }

    #[tokio::test]
    async fn counts_the_store_refuses_are_kept_for_the_next_save() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        let t = oauth_target(&["w1"]);
        let failing = Arc::new(FailingStats::default());
        let service = ChatService::new(
            f.service.tokens.clone(),
            f.service.auth.clone(),
            f.service.clients.clone(),
            f.clock.clone(),
            failing.clone(),
        );
        service
            .send(&t, &hello(), &RecordingPrompt::default())
            .await
            .unwrap();
        service.flush_statistics().await;
        assert!(failing.attempts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        failing
            .works
            .store(true, std::sync::atomic::Ordering::SeqCst);
        service
            .send(&t, &hello(), &RecordingPrompt::default())
            .await
            .unwrap();
        service.flush_statistics().await;
        let totals = failing.memory.0.lock().unwrap().clone();
        assert_eq!(totals.get(&id("w1")).unwrap().requests, 2);
    }

    /// Rate-limits `at-w1`; every other request stays in flight for ever, and says so.
    #[derive(Default)]
    struct Unanswering {
        in_flight: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl ChatClient for Unanswering {
        fn provider(&self) -> ChatProvider {
            ChatProvider::Anthropic
        }
        async fn send(
            &self,
            _request: &ChatRequest,
            auth: ChatAuth<'_>,
            _on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
        ) -> Result<ChatReply, ChatError> {
            if let ChatAuth::OAuth { token, .. } = auth {
                if token.access_token.expose() == "at-w1" {
                    return Err(ChatError::RateLimited {
                        retry_after_secs: Some(60),
                        reset_at: None,
                        limits: Default::default(),
                    });
                }
            }
            self.in_flight.notify_one();
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_request_cancelled_in_flight_still_counts_what_it_sent() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        let client = Arc::new(Unanswering::default());
        let mut clients = ChatClients::new();
        clients.register(client.clone());
        let service = ChatService::new(
            f.service.tokens.clone(),
            f.service.auth.clone(),
            clients,
            f.clock.clone(),
            f.stats.clone(),
        );
        let (t, request) = (oauth_target(&["w1", "w2"]), hello());
        let prompt = RecordingPrompt::default();
        // Cancelling is dropping the request's future, as the REPL does at Ctrl-C.
        tokio::select! {
            _ = service.send(&t, &request, &prompt) => panic!("an unanswered request ended"),
            () = client.in_flight.notified() => {}
        }
        service.flush_statistics().await;
        let totals = f.stats.0.lock().unwrap().clone();
        let w1 = totals.get(&id("w1")).unwrap();
        assert_eq!((w1.requests, w1.rate_limits, w1.failovers), (1, 1, 1));
        assert_eq!(totals.get(&id("w2")).unwrap().requests, 1);
    }

    /// Refuses every save until `works` is set.
    #[derive(Default)]
    struct FailingStats {
        works: std::sync::atomic::AtomicBool,
        attempts: std::sync::atomic::AtomicUsize,
        memory: MemoryStats,
    }

    #[async_trait::async_trait]
    impl StatsStore for FailingStats {
        async fn load(&self) -> Result<StatsTotals, PersistenceError> {
            self.memory.load().await
        }
        async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.attempts.fetch_add(1, SeqCst);
            if !self.works.load(SeqCst) {
                return Err(PersistenceError::Refused {
                    place: "stats.json".into(),
                    message: "disk full".into(),
                });
            }
            self.memory.add(delta).await
        }
    }

    #[tokio::test]
    async fn a_401_refreshes_once_and_the_same_bucket_answers() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_refresh()
            .times(1)
            .returning(|_| Ok(token("at-w1-new", Some("rt-2"), NOW + 3600)));
        let f = fixture(flow);
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        f.client.answer(
            "at-w1",
            vec![Err(ChatError::Unauthorized("expired".into()))],
        );
        let reply = f
            .service
            .send(
                &oauth_target(&["w1", "w2"]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:at-w1-new");
    }

    #[tokio::test]
    async fn a_revoked_bucket_is_marked_needs_login_and_the_next_answers() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        f.client
            .answer("at-w1", vec![Err(ChatError::Forbidden("revoked".into()))]);
        let reply = f
            .service
            .send(
                &oauth_target(&["w1", "w2"]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        assert!(matches!(
            f.service.health(&id("w1")),
            BucketHealth::NeedsLogin { .. }
        ));
    }

    #[tokio::test]
    async fn a_failure_after_the_first_piece_is_cut_short_and_no_other_bucket_is_asked() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        f.client.answer("at-w1", vec![limited(60)]);
        f.client.stream_before_failures("at-w1", "Hel");
        let error = f
            .service
            .send(
                &oauth_target(&["w1", "w2"]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, SendError::CutShort(ChatError::RateLimited { .. })),
            "{error:?}"
        );
        assert_eq!(*f.client.calls.lock().unwrap(), ["at-w1"]);
        // What the failure said about the bucket still counts: it cools down.
        assert!(matches!(
            f.service.health(&id("w1")),
            BucketHealth::CoolingUntil { .. }
        ));
    }

    #[tokio::test]
    async fn with_a_key_a_failure_after_the_first_piece_is_cut_short_too() {
        let f = fixture(MockOAuthFlow::new());
        f.client
            .answer("k", vec![Err(ChatError::Network("reset".into()))]);
        f.client.stream_before_failures("k", "Hel");
        let error = f
            .service
            .send(
                &target(Some("k"), &[]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::CutShort(_)), "{error:?}");
        assert_eq!(*f.client.calls.lock().unwrap(), ["k"]);
    }

    #[tokio::test]
    async fn all_buckets_limited_reports_each_and_the_earliest_reset() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        f.client.answer("at-w1", vec![limited(300)]);
        f.client.answer("at-w2", vec![limited(60)]);
        let err = f
            .service
            .send(
                &oauth_target(&["w1", "w2"]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap_err();
        let SendError::Exhausted { provider, report } = err else {
            panic!("{err:?}");
        };
        // As the user reads it: the presenter renders the domain's report.
        let text = crate::presenter::render_exhausted(provider, &report, f.clock.as_ref());
        assert!(
            text.starts_with("All OAuth buckets exhausted. Please wait for rate limits to reset."),
            "{text}"
        );
        assert!(text.contains("anthropic/w1: rate limited until"), "{text}");
        assert!(text.contains("anthropic/w2: rate limited until"), "{text}");
        assert!(text.contains("(in 1 minute)"), "{text}");
    }

    #[tokio::test]
    async fn services_sharing_a_health_store_honour_each_others_cooldowns_and_logins() {
        let shared = Arc::new(MemoryHealth::default());
        let first = fixture(MockOAuthFlow::new());
        log_in(&first, "w1").await;
        log_in(&first, "w2").await;
        let (store, clock) = (first.store.clone(), first.clock.clone());
        let first_service = first.service.with_health_store(shared.clone());
        first.client.answer("at-w1", vec![limited(120)]);
        let t = oauth_target(&["w1", "w2"]);
        let prompt = RecordingPrompt::default();
        let reply = first_service.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        // The health is recorded after the answer; the process flushes it before it exits.
        first_service.flush_statistics().await;

        // "Another process": its own service and client, the same tokens and health.
        let second = fixture(MockOAuthFlow::new());
        let tokens = Arc::new(TokenService::new(
            store.clone(),
            FlowRegistry::new(),
            clock.clone(),
        ));
        let auth = Arc::new(AuthService::new(store, FlowRegistry::new()));
        let mut clients = ChatClients::new();
        clients.register(second.client.clone());
        let other = ChatService::new(tokens, auth, clients, clock.clone(), second.stats.clone())
            .with_health_store(shared.clone());
        let reply = other.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        assert_eq!(*second.client.calls.lock().unwrap(), vec!["at-w2"]);
        other.load_shared_health().await;
        assert!(matches!(
            other.health(&id("w1")),
            BucketHealth::CoolingUntil { .. }
        ));

        // A new login clears it for everyone.
        first_service.mark_usable(&id("w1")).await;
        other.load_shared_health().await;
        assert_eq!(other.health(&id("w1")), BucketHealth::Usable);
        assert!(shared.load().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn with_a_key_no_token_is_read_and_no_flow_starts() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login().times(0);
        flow.expect_refresh().times(0);
        let f = fixture(flow);
        let reply = f
            .service
            .send(
                &target(Some("sk-sim"), &[]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:sk-sim");
    }

    #[tokio::test]
    async fn the_first_request_with_nothing_logged_in_runs_the_login_then_answers() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login()
            .times(1)
            .returning(|_| Ok(token("at-fresh", Some("rt"), NOW + 3600)));
        let f = fixture(flow);
        let prompt = RecordingPrompt::default();
        let reply = f
            .service
            .send(&oauth_target(&[]), &hello(), &prompt)
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:at-fresh");
        assert!(f.store.load(&id("default")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_bucket_without_a_token_is_skipped_not_logged_in_mid_conversation() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login().times(0);
        let f = fixture(flow);
        log_in(&f, "w2").await;
        let prompt = RecordingPrompt::default();
        let reply = f
            .service
            .send(&oauth_target(&["w1", "w2"]), &hello(), &prompt)
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:at-w2");
        let shown = prompt.0.lock().unwrap().join("\n");
        assert!(shown.contains("anthropic/w1"), "{shown}");
    }

    #[tokio::test]
    async fn a_request_reads_its_token_once() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        f.service
            .send(
                &oauth_target(&["w1"]),
                &hello(),
                &RecordingPrompt::default(),
            )
            .await
            .unwrap();
        assert_eq!(f.store.loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_bucket_is_reported_skipped_before_a_lazy_login_that_succeeds() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login()
            .times(1)
            .returning(|_| Ok(token("at-fresh", Some("rt"), NOW + 3600)));
        let f = fixture(flow);
        let prompt = RecordingPrompt::default();
        let reply = f
            .service
            .send(&oauth_target(&["w1", "w2"]), &hello(), &prompt)
            .await
            .unwrap();
        assert_eq!(reply.text, "ok:at-fresh");
        assert!(f.store.load(&id("w1")).await.unwrap().is_some());
        let shown = prompt.0.lock().unwrap().join("\n");
        assert!(shown.contains("not logged in yet"), "{shown}");
        assert!(!shown.contains("Skipping"), "{shown}");
    }

    #[tokio::test]
    async fn a_cooling_bucket_that_holds_a_token_prevents_the_lazy_login() {
        let mut flow = MockOAuthFlow::new();
        flow.expect_login().times(0);
        let f = fixture(flow);
        log_in(&f, "w2").await;
        f.client.answer("at-w2", vec![limited(600)]);
        let target = oauth_target(&["w1", "w2"]);
        let first = f
            .service
            .send(&target, &hello(), &RecordingPrompt::default())
            .await;
        assert!(
            matches!(first, Err(SendError::Exhausted { .. })),
            "{first:?}"
        );
        // Now w1 has no token and w2 is cooling: the failover finds no token, yet w2 holds one.
        let prompt = RecordingPrompt::default();
        let second = f.service.send(&target, &hello(), &prompt).await;
        let Err(SendError::Exhausted { report, .. }) = second else {
            panic!("{second:?}");
        };
        let names: Vec<&str> = report.buckets.iter().map(|b| b.bucket.as_str()).collect();
        assert_eq!(names, ["w1", "w2"], "{report:?}");
        let shown = prompt.0.lock().unwrap().join("\n");
        assert!(!shown.contains("not logged in yet"), "{shown}");
    }

    fn five_hour_at(percent: f64, resets_in: i64) -> Limits {
        Limits {
            windows: vec![llxprt_domain::QuotaWindow::new(
                llxprt_domain::WindowName::FiveHour,
                percent,
                Some(UnixSeconds(NOW + resets_in)),
            )],
            credits: None,
        }
    }

    fn threshold(mut target: SendTarget, percent: u8) -> SendTarget {
        target.switch_at_percent = percent;
        target
    }

    #[tokio::test]
    async fn a_bucket_reported_over_the_threshold_is_passed_over_with_a_line_until_its_window_resets(
    ) {
        let f = fixture(MockOAuthFlow::new());
        for n in ["w1", "w2"] {
            log_in(&f, n).await;
        }
        f.client.report("at-w1", five_hour_at(96.0, 1800));
        let t = threshold(oauth_target(&["w1", "w2"]), 90);
        let prompt = RecordingPrompt::default();
        // The first answer tells what w1 has used; the next request moves on without asking it.
        assert_eq!(
            f.service.send(&t, &hello(), &prompt).await.unwrap().text,
            "ok:at-w1"
        );
        assert_eq!(
            f.service.send(&t, &hello(), &prompt).await.unwrap().text,
            "ok:at-w2"
        );
        assert_eq!(*f.client.calls.lock().unwrap(), vec!["at-w1", "at-w2"]);
        let shown = prompt.0.lock().unwrap().join("\n");
        let until = f.clock.time_of_day(UnixSeconds(NOW + 1800));
        assert!(
            shown.contains(&format!(
                "anthropic/w1 at 96% of its 5h window until {until}; using w2"
            )),
            "{shown}"
        );
        // Under the default threshold the same figures hold nothing back.
        let default = oauth_target(&["w1", "w2"]);
        assert_eq!(
            f.service
                .send(&default, &hello(), &prompt)
                .await
                .unwrap()
                .text,
            "ok:at-w1"
        );
        // At the window's reset, w1 is used again under the threshold too.
        f.clock.advance(1800);
        assert_eq!(
            f.service.send(&t, &hello(), &prompt).await.unwrap().text,
            "ok:at-w1"
        );
    }

    #[tokio::test]
    async fn figures_are_shared_with_other_processes_and_a_clear_forgets_them() {
        let first = fixture(MockOAuthFlow::new());
        let shared = Arc::new(MemoryHealth::default());
        for n in ["w1", "w2"] {
            log_in(&first, n).await;
        }
        first.client.report("at-w1", five_hour_at(100.0, 600));
        let first_service = first.service.with_health_store(shared.clone());
        let t = oauth_target(&["w1", "w2"]);
        let prompt = RecordingPrompt::default();
        first_service.send(&t, &hello(), &prompt).await.unwrap();
        first_service.flush_statistics().await;
        assert_eq!(
            shared.load_limits().await.unwrap()[&id("w1")].limits,
            five_hour_at(100.0, 600)
        );
        // Another process, same tokens and health: a used-up window holds w1 back even under
        // the default threshold, and nothing is sent to it.
        let other = fixture(MockOAuthFlow::new());
        for n in ["w1", "w2"] {
            log_in(&other, n).await;
        }
        let other_service = other.service.with_health_store(shared.clone());
        assert_eq!(
            other_service
                .send(&t, &hello(), &prompt)
                .await
                .unwrap()
                .text,
            "ok:at-w2"
        );
        assert_eq!(*other.client.calls.lock().unwrap(), vec!["at-w2"]);
        // The near-limit hold is not written down as a cooldown of its own.
        assert!(shared.load().await.unwrap().is_empty());
        // `/auth P clear` (here: mark_usable) forgets the figures for everyone.
        first_service.mark_usable(&id("w1")).await;
        assert!(shared.load_limits().await.unwrap().is_empty());
        assert_eq!(
            other_service
                .send(&t, &hello(), &prompt)
                .await
                .unwrap()
                .text,
            "ok:at-w1"
        );
    }

    #[tokio::test]
    async fn the_same_figures_are_not_written_again_within_a_minute() {
        let f = fixture(MockOAuthFlow::new());
        let shared = Arc::new(MemoryHealth::default());
        log_in(&f, "w1").await;
        f.client.report("at-w1", five_hour_at(40.0, 3600));
        let service = f.service.with_health_store(shared.clone());
        let t = oauth_target(&["w1"]);
        let prompt = RecordingPrompt::default();
        let writes = || shared.calls(crate::testkit::PersistenceOperation::Write);
        service.send(&t, &hello(), &prompt).await.unwrap();
        service.flush_statistics().await;
        let after_first = writes();
        service.send(&t, &hello(), &prompt).await.unwrap();
        service.flush_statistics().await;
        assert_eq!(writes(), after_first, "the same figures were written again");
        f.clock.advance(61);
        service.send(&t, &hello(), &prompt).await.unwrap();
        service.flush_statistics().await;
        assert_eq!(writes(), after_first + 1);
        assert_eq!(
            shared.load_limits().await.unwrap()[&id("w1")].seen_at,
            UnixSeconds(NOW + 61)
        );
    }

    #[tokio::test]
    async fn a_retry_after_of_days_cools_a_bucket_only_until_its_windows_reset() {
        let f = fixture(MockOAuthFlow::new());
        log_in(&f, "w1").await;
        log_in(&f, "w2").await;
        f.client.answer(
            "at-w1",
            vec![Err(ChatError::RateLimited {
                retry_after_secs: Some(124_633),
                reset_at: None,
                limits: five_hour_at(100.0, 1200),
            })],
        );
        let t = oauth_target(&["w1", "w2"]);
        let prompt = RecordingPrompt::default();
        f.service.send(&t, &hello(), &prompt).await.unwrap();
        assert_eq!(
            f.service.health(&id("w1")),
            BucketHealth::CoolingUntil {
                until: UnixSeconds(NOW + 1200),
                cause: CooldownCause::RateLimited
            }
        );
    }
}
