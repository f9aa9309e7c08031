//! The sign-in port: one OAuth flow per provider, and the browser it may open.

use async_trait::async_trait;
use llxprt_domain::{BucketId, OAuthProvider, Secret, Token};

use super::prompt::{PromptError, UserPrompt};

/// Why a login did not produce a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The user or the provider refused (`error=access_denied`, device flow denied).
    #[error("sign-in was denied: {0}")]
    Denied(String),
    /// The flow ran out of time (device code expired, nobody came back).
    #[error("sign-in timed out: {0}")]
    Expired(String),
    /// What came back does not belong to this login (wrong state, malformed code or URL).
    #[error("sign-in failed: {0}")]
    Invalid(String),
    /// The provider's token endpoint refused the exchange.
    #[error("the provider refused the sign-in: {0}")]
    Rejected(String),
    /// The network or the provider failed; trying again may work.
    #[error("could not reach the provider: {0}")]
    Transient(String),
    /// The user could not be asked.
    #[error(transparent)]
    Prompt(#[from] PromptError),
}

/// Why a refresh did not produce a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The refresh token is invalid, revoked or already used: the bucket needs a new login.
    #[error("the provider rejected the refresh token ({0}); sign in again")]
    NeedsLogin(String),
    /// The network or the provider failed; nothing changed and trying later may work.
    #[error("the token could not be refreshed right now: {0}")]
    Transient(String),
}

/// How a sign-in reaches the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginMethod {
    /// The provider's usual flow (a browser, a pasted code, a device code for Qwen).
    #[default]
    Usual,
    /// A device login: a code to enter on another machine's browser (`--device`).
    Device,
}

/// What a sign-in is for: the bucket it fills (named on the pages the user sees) and how it
/// reaches the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The bucket the token will be saved in.
    pub bucket: BucketId,
    /// How the user signs in.
    pub method: LoginMethod,
}

/// One provider's sign-in and refresh.
#[async_trait]
pub trait OAuthFlow: Send + Sync {
    /// The provider this flow signs in to.
    fn provider(&self) -> OAuthProvider;

    /// Runs the interactive sign-in, talking to the user through `prompt`.
    ///
    /// # Errors
    /// A [`FlowError`] saying why no token was obtained.
    async fn login(&self, prompt: &dyn UserPrompt) -> Result<Token, FlowError>;

    /// Runs the sign-in for `request`. Flows that name the bucket on their pages, or have a
    /// device login, override it; the others run [`OAuthFlow::login`].
    ///
    /// # Errors
    /// A [`FlowError`] saying why no token was obtained; [`FlowError::Invalid`] when a device
    /// login is asked of a provider that has none.
    async fn login_for(
        &self,
        request: &LoginRequest,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, FlowError> {
        match request.method {
            LoginMethod::Usual => self.login(prompt).await,
            LoginMethod::Device => Err(FlowError::Invalid(format!(
                "{} has no device login; run `/auth {} login` without --device",
                self.provider(),
                self.provider()
            ))),
        }
    }

    /// Trades a refresh token for a new token. The result holds only what the provider returned;
    /// the caller merges it into the stored token.
    ///
    /// # Errors
    /// [`RefreshError::NeedsLogin`] when the provider rejects the refresh token,
    /// [`RefreshError::Transient`] for network and server failures.
    async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError>;
}

/// The browser could not be opened; the flow falls back to asking the user to paste.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// Opening is not possible here (`--nobrowser`, no display, SSH session).
    #[error("no browser available: {0}")]
    Unavailable(String),
    /// The launch was tried and failed.
    #[error("the browser could not be launched: {0}")]
    LaunchFailed(String),
    /// The address is not one a sign-in opens (not absolute `https`, nor `http` on loopback);
    /// nothing was launched.
    #[error("refused to open the sign-in address: {0}")]
    UnsafeUrl(String),
}

/// Opens a URL for the user.
#[async_trait]
pub trait Browser: Send + Sync {
    /// Opens `url`.
    ///
    /// # Errors
    /// [`BrowserError`] when no browser can be opened; the caller then asks the user to paste.
    async fn open(&self, url: &str) -> Result<(), BrowserError>;

    /// Why no browser can be opened here, when that is known before any URL is made
    /// (`--nobrowser`, no display, SSH); `None` when one may open. A flow with a separate
    /// no-browser redirect (Gemini's code page) picks it from this.
    fn unavailable(&self) -> Option<String> {
        None
    }
}
