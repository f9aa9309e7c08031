//! A provider's sign-in and refresh, played in memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_domain::{OAuthProvider, Secret, Token};

use super::faults::Faults;
use crate::ports::{Clock, FlowError, OAuthFlow, RefreshError, UserPrompt};

/// How long the tokens a [`FakeOAuthFlow`] issues last.
pub const FAKE_TOKEN_LIFETIME_SECONDS: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Login,
    Refresh,
}

#[derive(Debug, Clone)]
enum Failure {
    Login(FlowError),
    Refresh(RefreshError),
}

/// A provider that signs in without asking anyone and refreshes like the real ones: each login
/// or refresh issues a new access token and a new, single-use refresh token; a refresh token
/// that was already spent, revoked or never issued is rejected
/// ([`RefreshError::NeedsLogin`]). Tokens last [`FAKE_TOKEN_LIFETIME_SECONDS`] from the clock's
/// time. It can be told to fail its next logins or refreshes.
pub struct FakeOAuthFlow {
    provider: OAuthProvider,
    clock: Arc<dyn Clock>,
    state: Mutex<FlowState>,
    faults: Faults<Op, Failure>,
}

#[derive(Default)]
struct FlowState {
    issued: u64,
    live_refresh_tokens: HashSet<String>,
}

impl FakeOAuthFlow {
    /// A flow for `provider` issuing tokens that expire an hour after `clock`'s time.
    pub fn new(provider: OAuthProvider, clock: Arc<dyn Clock>) -> Self {
        Self {
            provider,
            clock,
            state: Mutex::new(FlowState::default()),
            faults: Faults::default(),
        }
    }

    /// The next `count` logins fail with `error`.
    pub fn fail_next_logins(&self, count: u32, error: FlowError) {
        self.faults.next(Op::Login, count, Failure::Login(error));
    }

    /// The next `count` refreshes fail with `error` (the refresh token stays unspent).
    pub fn fail_next_refreshes(&self, count: u32, error: RefreshError) {
        self.faults
            .next(Op::Refresh, count, Failure::Refresh(error));
    }

    /// Every refresh token issued so far stops working, as when the user revokes the grant.
    pub fn revoke_all(&self) {
        self.state().live_refresh_tokens.clear();
    }

    /// How many logins were asked for, failed ones included.
    pub fn logins(&self) -> usize {
        self.faults.calls(Op::Login)
    }

    /// How many refreshes were asked for, failed ones included.
    pub fn refreshes(&self) -> usize {
        self.faults.calls(Op::Refresh)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FlowState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn issue(&self) -> Token {
        let mut state = self.state();
        state.issued += 1;
        let n = state.issued;
        let refresh = format!("{}-refresh-{n}", self.provider);
        state.live_refresh_tokens.insert(refresh.clone());
        let mut token = Token::new(
            Secret::new(format!("{}-access-{n}", self.provider)),
            self.clock.now() + FAKE_TOKEN_LIFETIME_SECONDS,
        );
        token.refresh_token = Some(Secret::new(refresh));
        token
    }
}

#[async_trait]
impl OAuthFlow for FakeOAuthFlow {
    fn provider(&self) -> OAuthProvider {
        self.provider
    }

    async fn login(&self, _prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
        match self.faults.check(Op::Login) {
            Err(Failure::Login(error)) => Err(error),
            _ => Ok(self.issue()),
        }
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError> {
        if let Err(Failure::Refresh(error)) = self.faults.check(Op::Refresh) {
            return Err(error);
        }
        if !self
            .state()
            .live_refresh_tokens
            .remove(refresh_token.expose())
        {
            return Err(RefreshError::NeedsLogin(
                "invalid_grant: the refresh token is not valid".to_owned(),
            ));
        }
        Ok(self.issue())
    }
}
