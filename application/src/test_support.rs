//! Doubles shared by the services' unit tests: a fixed clock, a map-backed store that can play
//! "another process", and a mockall mock of the sign-in flow.

#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};

use crate::ports::{
    BucketLock, Clock, FlowError, OAuthFlow, RefreshError, StoreError, TokenStore, UserPrompt,
};

pub const NOW: i64 = 1_000_000;

pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(NOW)
    }
}

#[allow(unused_parens)] // mockall needs the explicit object lifetime to match async_trait's.
mod mock {
    use super::*;
    mockall::mock! {
        pub OAuthFlow {}
        #[async_trait]
        impl OAuthFlow for OAuthFlow {
            fn provider(&self) -> OAuthProvider;
            async fn login<'a, 'b>(&'a self, prompt: &'b (dyn UserPrompt + 'b)) -> Result<Token, FlowError>;
            async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError>;
        }
    }
}
pub use mock::MockOAuthFlow;

/// A store in a map, with one lock for all buckets; `on_lock` is a token that "another
/// process" writes while this one waits for the lock.
#[derive(Default)]
pub struct MapStore {
    pub tokens: Mutex<HashMap<BucketId, Token>>,
    pub lock: Arc<tokio::sync::Mutex<()>>,
    pub on_lock: Mutex<Option<Token>>,
    pub saves: AtomicUsize,
    pub loads: AtomicUsize,
}

struct Held(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);
impl BucketLock for Held {}

#[async_trait]
impl TokenStore for MapStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.tokens.lock().unwrap().get(bucket).cloned())
    }
    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.tokens
            .lock()
            .unwrap()
            .insert(bucket.clone(), token.clone());
        Ok(())
    }
    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        Ok(self.tokens.lock().unwrap().remove(bucket).is_some())
    }
    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        let map = self.tokens.lock().unwrap();
        let mut names: Vec<_> = map
            .keys()
            .filter(|b| b.provider == provider)
            .map(|b| b.bucket.clone())
            .collect();
        names.sort();
        Ok(names)
    }
    async fn lock(
        &self,
        bucket: &BucketId,
        _timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        let guard = self.lock.clone().lock_owned().await;
        if let Some(other) = self.on_lock.lock().unwrap().take() {
            self.tokens.lock().unwrap().insert(bucket.clone(), other);
        }
        Ok(Box::new(Held(guard)))
    }
}

pub fn token(access: &str, refresh: Option<&str>, expiry: i64) -> Token {
    let mut t = Token::new(Secret::new(access), UnixSeconds(expiry));
    t.refresh_token = refresh.map(Secret::new);
    t
}

/// A prompt that shows nothing and answers nothing.
pub struct SilentPrompt;

#[async_trait]
impl UserPrompt for SilentPrompt {
    fn show(&self, _line: &str) {}
    fn waiting(&self, _what: &str, _done: bool) {}
    async fn ask(&self, _question: &str) -> Result<String, crate::ports::PromptError> {
        Err(crate::ports::PromptError::NoInput("test".into()))
    }
}

/// Registers a mock flow for Anthropic.
pub fn flow_with(flows: &mut crate::services::FlowRegistry, mut flow: MockOAuthFlow) {
    flow.expect_provider()
        .return_const(OAuthProvider::Anthropic);
    flows.register(Arc::new(flow));
}

/// A clock tests can move on.
pub struct MovableClock(pub std::sync::atomic::AtomicI64);

impl MovableClock {
    pub fn at(now: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(now))
    }
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for MovableClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(self.0.load(Ordering::SeqCst))
    }
}

/// Statistics kept in memory.
#[derive(Default)]
pub struct MemoryStats(pub Mutex<llxprt_domain::stats::StatsTotals>);

#[async_trait]
impl crate::ports::StatsStore for MemoryStats {
    async fn load(
        &self,
    ) -> Result<llxprt_domain::stats::StatsTotals, crate::ports::PersistenceError> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn add(
        &self,
        delta: &llxprt_domain::stats::StatsDelta,
    ) -> Result<llxprt_domain::stats::StatsTotals, crate::ports::PersistenceError> {
        let mut totals = self.0.lock().unwrap();
        totals.apply(delta);
        Ok(totals.clone())
    }
}

pub use crate::testkit::MemoryHealthStore as MemoryHealth;

/// A chat client that answers from a script per access token (or key) and records every call.
#[derive(Default)]
pub struct ScriptedClient {
    pub script:
        Mutex<HashMap<String, std::collections::VecDeque<Result<String, crate::ports::ChatError>>>>,
    pub calls: Mutex<Vec<String>>,
    /// A piece streamed before each scripted failure, per credential: a reply cut short.
    pub partial: Mutex<HashMap<String, String>>,
    /// The limits every answer for a credential reports.
    pub reports: Mutex<HashMap<String, llxprt_domain::Limits>>,
}

impl ScriptedClient {
    /// Makes every scripted failure for `credential` come after `piece` was streamed.
    pub fn stream_before_failures(&self, credential: &str, piece: &str) {
        self.partial
            .lock()
            .unwrap()
            .insert(credential.to_owned(), piece.to_owned());
    }

    /// Makes every answer for `credential` report `limits`.
    pub fn report(&self, credential: &str, limits: llxprt_domain::Limits) {
        self.reports
            .lock()
            .unwrap()
            .insert(credential.to_owned(), limits);
    }

    /// The next answers for requests sent with `credential`; once used up, it answers `ok:CRED`.
    pub fn answer(&self, credential: &str, answers: Vec<Result<String, crate::ports::ChatError>>) {
        self.script
            .lock()
            .unwrap()
            .insert(credential.to_owned(), answers.into());
    }
}

#[async_trait]
impl crate::ports::ChatClient for ScriptedClient {
    fn provider(&self) -> llxprt_domain::ChatProvider {
        llxprt_domain::ChatProvider::Anthropic
    }
    async fn send(
        &self,
        _request: &crate::ports::ChatRequest,
        auth: crate::ports::ChatAuth<'_>,
        on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<crate::ports::ChatReply, crate::ports::ChatError> {
        let credential = match auth {
            crate::ports::ChatAuth::ApiKey(key) => key.expose().to_owned(),
            crate::ports::ChatAuth::OAuth { token, .. } => token.access_token.expose().to_owned(),
        };
        self.calls.lock().unwrap().push(credential.clone());
        let next = self
            .script
            .lock()
            .unwrap()
            .get_mut(&credential)
            .and_then(|answers| answers.pop_front());
        let next = next.unwrap_or_else(|| Ok(format!("ok:{credential}")));
        if next.is_err() {
            if let Some(piece) = self.partial.lock().unwrap().get(&credential) {
                on_text(piece);
            }
        }
        let text = next?;
        on_text(&text);
        let mut reply = crate::ports::ChatReply::new(text);
        if let Some(limits) = self.reports.lock().unwrap().get(&credential) {
            reply.limits = limits.clone();
        }
        Ok(reply)
    }
}

/// A prompt that records what it was shown.
#[derive(Default)]
pub struct RecordingPrompt(pub Mutex<Vec<String>>);

#[async_trait]
impl UserPrompt for RecordingPrompt {
    fn show(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
    fn waiting(&self, _what: &str, _done: bool) {}
    async fn ask(&self, _question: &str) -> Result<String, crate::ports::PromptError> {
        Err(crate::ports::PromptError::NoInput("test".into()))
    }
}
