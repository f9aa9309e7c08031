//! Gemini (Google account): browser sign-in redirected to a loopback port the OS picks.
//!
//! Without a browser the user pastes the address the browser was sent to
//! (`http://localhost:PORT/oauth2callback?code=…&state=…`), or only its `code` value. A bare code
//! cannot be checked against the state, so it is accepted on trust and exchanged with the same
//! loopback `redirect_uri`; Google's separate manual page (`codeassist.google.com/authcode`) is
//! not used.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, Clock, FlowError, OAuthFlow, RefreshError, UserPrompt};
use llxprt_domain::{OAuthProvider, Secret, Token};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use tokio::net::TcpListener;

use super::http::{
    exchange_error, new_client, parse_url, redact_flow_error, redact_refresh_error, refresh_error,
    token_from, OAuthClient, OAuthConfigError, OAuthHttp,
};
use super::loopback::{BareCode, BrowserSignIn, CallbackServer, DEFAULT_CALLBACK_TIMEOUT};

/// The path Google redirects to on the loopback port.
const CALLBACK_PATH: &str = "/oauth2callback";

/// Where and as whom to sign in to Google (`providers.gemini.oauth` in settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiConfig {
    /// Google's consent page.
    pub authorize_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The installed-app client id.
    pub client_id: String,
    /// The installed-app client secret (sent at exchange and refresh).
    pub client_secret: Secret,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// The Gemini sign-in: loopback redirect on an ephemeral port, PKCE, offline access.
pub struct GeminiFlow {
    client: OAuthClient<EndpointSet, EndpointNotSet>,
    scopes: Vec<Scope>,
    http: OAuthHttp,
    browser: Arc<dyn Browser>,
    clock: Arc<dyn Clock>,
    callback_timeout: Duration,
}

impl GeminiFlow {
    /// A flow over the given settings.
    ///
    /// # Errors
    /// [`OAuthConfigError::InvalidUrl`] naming the setting that does not parse.
    pub fn new(
        config: GeminiConfig,
        http: OAuthHttp,
        browser: Arc<dyn Browser>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OAuthConfigError> {
        let provider = OAuthProvider::Gemini;
        let authorize_url = parse_url(provider, "authorize_url", &config.authorize_url)?;
        let token_url = parse_url(provider, "token_url", &config.token_url)?;
        let client = new_client(&config.client_id)
            .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(authorize_url))
            .set_token_uri(TokenUrl::from_url(token_url));
        Ok(Self {
            client,
            scopes: config.scopes.into_iter().map(Scope::new).collect(),
            http,
            browser,
            clock,
            callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
        })
    }

    /// Changes how long the flow waits for the browser to come back (default five minutes).
    pub fn with_callback_timeout(mut self, timeout: Duration) -> Self {
        self.callback_timeout = timeout;
        self
    }
}

#[async_trait]
impl OAuthFlow for GeminiFlow {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Gemini
    }

    async fn login(&self, prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            FlowError::Transient(format!("could not open a local port for the sign-in: {e}"))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| FlowError::Transient(format!("could not read the local port: {e}")))?
            .port();
        let redirect = RedirectUrl::new(format!("http://localhost:{port}{CALLBACK_PATH}"))
            .map_err(|_| FlowError::Invalid("could not form the redirect address".to_owned()))?;
        let client = self.client.clone().set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned())
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent")
            .set_pkce_challenge(challenge)
            .url();
        let server = CallbackServer::start(listener, CALLBACK_PATH, &state);
        let code = BrowserSignIn {
            provider: OAuthProvider::Gemini,
            url: &url,
            state: &state,
            bare_code: BareCode::Accepted,
            timeout: self.callback_timeout,
        }
        .obtain_code(server, self.browser.as_ref(), prompt)
        .await?;
        let verifier_text = Secret::new(verifier.secret().clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
            .set_pkce_verifier(verifier)
            .request_async(self.http.transport())
            .await
            .map_err(|e| {
                let sent = [code.expose(), verifier_text.expose(), state.secret()];
                redact_flow_error(exchange_error(e), &sent)
            })?;
        Ok(token_from(&response, self.clock.now())?)
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError> {
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = self
            .client
            .exchange_refresh_token(&refresh_token)
            .request_async(self.http.transport())
            .await
            .map_err(|e| redact_refresh_error(refresh_error(e), &[refresh_token.secret()]))?;
        Ok(token_from(&response, self.clock.now())?)
    }
}
