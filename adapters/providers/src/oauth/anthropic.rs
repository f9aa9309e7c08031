//! Anthropic (Claude Pro/Max): the provider's page shows `CODE#STATE`, the user pastes it, and the
//! code is exchanged with a JSON request that carries the state. The token endpoint takes JSON
//! only, so exchange and refresh are written by hand; `oauth2` builds the authorize URL.

use std::sync::Arc;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, Clock, FlowError, OAuthFlow, RefreshError, UserPrompt};
use llxprt_domain::{OAuthProvider, Secret, Token};
use oauth2::{
    AuthUrl, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge, RedirectUrl, Scope,
    TokenUrl,
};
use url::Url;

use super::http::{
    exchange_error, new_client, parse_url, redact_flow_error, redact_refresh_error, refresh_error,
    token_from, OAuthClient, OAuthConfigError, OAuthHttp,
};
use super::loopback::{parse_pasted, BareCode};

/// Where and as whom to sign in to Anthropic (`providers.anthropic.oauth` in settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicConfig {
    /// The page the user approves on.
    pub authorize_url: String,
    /// The token endpoint (JSON).
    pub token_url: String,
    /// The public client id.
    pub client_id: String,
    /// The provider's page that shows the code to paste.
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// The Anthropic sign-in: URL shown and opened, `CODE#STATE` pasted, JSON exchange.
pub struct AnthropicFlow {
    client: OAuthClient<EndpointSet, EndpointNotSet>,
    token_url: Url,
    config: AnthropicConfig,
    http: OAuthHttp,
    browser: Arc<dyn Browser>,
    clock: Arc<dyn Clock>,
}

impl AnthropicFlow {
    /// A flow over the given settings.
    ///
    /// # Errors
    /// [`OAuthConfigError::InvalidUrl`] naming the setting that does not parse.
    pub fn new(
        config: AnthropicConfig,
        http: OAuthHttp,
        browser: Arc<dyn Browser>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OAuthConfigError> {
        let provider = OAuthProvider::Anthropic;
        let authorize_url = parse_url(provider, "authorize_url", &config.authorize_url)?;
        let token_url = parse_url(provider, "token_url", &config.token_url)?;
        let redirect_uri = parse_url(provider, "redirect_uri", &config.redirect_uri)?;
        let client = new_client(&config.client_id)
            .set_auth_uri(AuthUrl::from_url(authorize_url))
            .set_token_uri(TokenUrl::from_url(token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(redirect_uri));
        Ok(Self {
            client,
            token_url,
            config,
            http,
            browser,
            clock,
        })
    }
}

#[async_trait]
impl OAuthFlow for AnthropicFlow {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Anthropic
    }

    async fn login(&self, prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.config.scopes.iter().cloned().map(Scope::new))
            .add_extra_param("code", "true")
            .set_pkce_challenge(challenge)
            .url();
        prompt.show("Sign in to anthropic: approve in the browser, then paste the code it shows.");
        prompt.show(url.as_str());
        if let Err(error) = self.browser.open(url.as_str()).await {
            prompt.show(&format!("{error}; open the URL above in a browser."));
        }
        let answer = prompt.ask("Paste the authorization code:").await?;
        let code = parse_pasted(prompt, &answer, &state, BareCode::Accepted)?;
        let body = serde_json::json!({
            "grant_type": "authorization_code",
            "code": code.expose(),
            "state": state.secret(),
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": verifier.secret(),
        });
        let response = self
            .http
            .post_json_for_token(&self.token_url, &body)
            .await
            .map_err(|e| {
                let sent = [code.expose(), verifier.secret(), state.secret()];
                redact_flow_error(exchange_error(e), &sent)
            })?;
        Ok(token_from(&response, self.clock.now())?)
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError> {
        // The token endpoint speaks JSON for refreshes too, so this is not `oauth2`'s form POST.
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose(),
            "client_id": self.config.client_id,
        });
        let response = self
            .http
            .post_json_for_token(&self.token_url, &body)
            .await
            .map_err(|e| redact_refresh_error(refresh_error(e), &[refresh_token.expose()]))?;
        Ok(token_from(&response, self.clock.now())?)
    }
}
