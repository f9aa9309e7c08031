//! OpenAI Codex (ChatGPT subscription): browser sign-in redirected to a fixed loopback port, with
//! the ChatGPT account id read from the `id_token`.
//!
//! Without a browser the user pastes the whole address the browser was sent to; a bare code is
//! refused, because only the address carries the state that proves it belongs to this sign-in.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use llxprt_application::ports::{Browser, Clock, FlowError, OAuthFlow, RefreshError, UserPrompt};
use llxprt_domain::{OAuthProvider, Secret, Token};
use oauth2::{
    AuthUrl, AuthorizationCode, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge,
    RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use tokio::net::TcpListener;

use super::http::{
    exchange_error, new_client, parse_url, redact_flow_error, redact_refresh_error, refresh_error,
    token_from, OAuthClient, OAuthConfigError, OAuthHttp, ProviderTokenResponse, UnusableToken,
};
use super::loopback::{BareCode, BrowserSignIn, CallbackServer, DEFAULT_CALLBACK_TIMEOUT};

/// The path the issuer redirects to on the loopback port.
const CALLBACK_PATH: &str = "/auth/callback";

/// Where and as whom to sign in to OpenAI (`providers.codex.oauth` in settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexConfig {
    /// The issuer: `{issuer}/oauth/authorize` and `{issuer}/oauth/token`.
    pub issuer: String,
    /// The public client id.
    pub client_id: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The loopback port the provider redirects to (1455).
    pub callback_port: u16,
    /// The port used when `callback_port` is busy (1457, the only other one the provider
    /// allows).
    pub fallback_port: u16,
}

/// The Codex sign-in: loopback redirect on a fixed port (with one fallback), PKCE, account id
/// from the id token.
pub struct CodexFlow {
    client: OAuthClient<EndpointSet, EndpointNotSet>,
    scopes: Vec<Scope>,
    ports: (u16, u16),
    http: OAuthHttp,
    browser: Arc<dyn Browser>,
    clock: Arc<dyn Clock>,
    callback_timeout: Duration,
}

impl CodexFlow {
    /// A flow over the given settings.
    ///
    /// # Errors
    /// [`OAuthConfigError::InvalidUrl`] when the issuer does not parse as a URL.
    pub fn new(
        config: CodexConfig,
        http: OAuthHttp,
        browser: Arc<dyn Browser>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OAuthConfigError> {
        let provider = OAuthProvider::Codex;
        let issuer = config.issuer.trim_end_matches('/');
        parse_url(provider, "issuer", issuer)?;
        let authorize_url = parse_url(provider, "issuer", &format!("{issuer}/oauth/authorize"))?;
        let token_url = parse_url(provider, "issuer", &format!("{issuer}/oauth/token"))?;
        let client = new_client(&config.client_id)
            .set_auth_uri(AuthUrl::from_url(authorize_url))
            .set_token_uri(TokenUrl::from_url(token_url));
        Ok(Self {
            client,
            scopes: config.scopes.into_iter().map(Scope::new).collect(),
            ports: (config.callback_port, config.fallback_port),
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

    /// The callback port, or the fallback (with a word to the user) when it is taken.
    async fn bind(&self, prompt: &dyn UserPrompt) -> Result<TcpListener, FlowError> {
        let (port, fallback) = self.ports;
        let busy = |port: u16| {
            move |e: std::io::Error| {
                FlowError::Transient(format!("could not listen on local port {port}: {e}"))
            }
        };
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => Ok(listener),
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                prompt.show(&format!(
                    "Port {port} is busy (another sign-in may be running); using port {fallback} instead."
                ));
                TcpListener::bind(("127.0.0.1", fallback))
                    .await
                    .map_err(busy(fallback))
            }
            Err(e) => Err(busy(port)(e)),
        }
    }

    fn token(&self, response: &ProviderTokenResponse) -> Result<Token, UnusableToken> {
        let mut token = token_from(response, self.clock.now())?;
        if let Some(id_token) = &response.extra_fields().id_token {
            token.account_id = chatgpt_account_id(id_token);
            if token.account_id.is_none() {
                tracing::warn!("the Codex id_token carries no ChatGPT account id");
            }
            token.id_token = Some(Secret::new(id_token.clone()));
        }
        Ok(token)
    }
}

#[async_trait]
impl OAuthFlow for CodexFlow {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Codex
    }

    async fn login(&self, prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
        let listener = self.bind(prompt).await?;
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
            .set_pkce_challenge(challenge)
            .add_extra_param("id_token_add_organizations", "true")
            .add_extra_param("codex_cli_simplified_flow", "true")
            .add_extra_param("originator", "codex_cli_rs")
            .url();
        let server = CallbackServer::start(listener, CALLBACK_PATH, &state);
        let code = BrowserSignIn {
            provider: OAuthProvider::Codex,
            url: &url,
            state: &state,
            bare_code: BareCode::Refused,
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
        Ok(self.token(&response)?)
    }

    async fn refresh(&self, refresh_token: &Secret) -> Result<Token, RefreshError> {
        let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = self
            .client
            .exchange_refresh_token(&refresh_token)
            .request_async(self.http.transport())
            .await
            .map_err(|e| redact_refresh_error(refresh_error(e), &[refresh_token.secret()]))?;
        Ok(self.token(&response)?)
    }
}

/// `["https://api.openai.com/auth"].chatgpt_account_id` of a JWT's payload. The signature is not
/// checked: the token came straight from the issuer over TLS, and the id only routes requests.
fn chatgpt_account_id(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("https://api.openai.com/auth")?
        .get("chatgpt_account_id")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn jwt(claims: &serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b64.encode(br#"{"alg":"RS256"}"#),
            b64.encode(claims.to_string())
        )
    }

    #[test]
    fn the_account_id_comes_from_the_auth_claim() {
        let token = jwt(&serde_json::json!({
            "sub": "u",
            "https://api.openai.com/auth": {"chatgpt_account_id": "acct-42"}
        }));
        assert_eq!(chatgpt_account_id(&token).as_deref(), Some("acct-42"));
        assert_eq!(
            chatgpt_account_id(&jwt(&serde_json::json!({"sub": "u"}))),
            None
        );
        assert_eq!(chatgpt_account_id("not-a-jwt"), None);
        assert_eq!(chatgpt_account_id("a.%%%.c"), None);
    }

    proptest! {
        #[test]
        fn reading_the_account_id_never_panics(text in any::<String>()) {
            let _ = chatgpt_account_id(&text);
        }

        #[test]
        fn any_payload_is_read_without_panicking(payload in any::<Vec<u8>>(), claims in r#"[\[\]{}":,a-z_/. 0-9]{0,60}"#) {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let _ = chatgpt_account_id(&format!("h.{}.s", b64.encode(&payload)));
            let _ = chatgpt_account_id(&format!("h.{}.s", b64.encode(claims.as_bytes())));
        }
    }
}
