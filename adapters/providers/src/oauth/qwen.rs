//! Qwen: the device authorization grant (RFC 8628) with PKCE. The user approves a code on
//! another device while the flow polls; the token says where the API lives (`resource_url`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, Clock, FlowError, OAuthFlow, RefreshError, UserPrompt};
use llxprt_domain::{OAuthProvider, Secret, Token};
use oauth2::basic::BasicErrorResponse;
use oauth2::{
    DeviceAuthorizationUrl, DeviceCodeErrorResponse, DeviceCodeErrorResponseType, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, RefreshToken, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, TokenUrl,
};

use url::Url;

use super::http::{
    describe_oauth_error, exchange_error, new_client, parse_url, poll_interval, redact_flow_error,
    redact_refresh_error, refresh_error, token_from, HttpFailure, OAuthClient, OAuthConfigError,
    OAuthHttp, ProviderTokenResponse, UnusableToken,
};

/// How often the user is shown that the flow is still waiting.
const WAITING_TICK: Duration = Duration::from_secs(1);

const WAITING: &str = "Waiting for the code to be approved";

/// The longest a device sign-in waits for approval, whatever the endpoint's `expires_in` says
/// (real codes last 5 to 15 minutes).
const MAX_DEVICE_WAIT: Duration = Duration::from_secs(30 * 60);

/// Where and as whom to sign in to Qwen (`providers.qwen.oauth` in settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenConfig {
    /// The device authorization endpoint.
    pub device_authorization_url: String,
    /// The token endpoint polled for approval and used for refresh.
    pub token_url: String,
    /// The public client id.
    pub client_id: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// The Qwen sign-in: device code shown, polled until approved, denied or expired.
pub struct QwenFlow {
    client: OAuthClient<EndpointNotSet, EndpointSet>,
    scopes: Vec<Scope>,
    http: OAuthHttp,
    browser: Arc<dyn Browser>,
    clock: Arc<dyn Clock>,
}

impl QwenFlow {
    /// A flow over the given settings.
    ///
    /// # Errors
    /// [`OAuthConfigError::InvalidUrl`] naming the setting that does not parse.
    pub fn new(
        config: QwenConfig,
        http: OAuthHttp,
        browser: Arc<dyn Browser>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OAuthConfigError> {
        let provider = OAuthProvider::Qwen;
        let device_url = parse_url(
            provider,
            "device_authorization_url",
            &config.device_authorization_url,
        )?;
        let token_url = parse_url(provider, "token_url", &config.token_url)?;
        let client = new_client(&config.client_id)
            .set_device_authorization_url(DeviceAuthorizationUrl::from_url(device_url))
            .set_token_uri(TokenUrl::from_url(token_url));
        Ok(Self {
            client,
            scopes: config.scopes.into_iter().map(Scope::new).collect(),
            http,
            browser,
            clock,
        })
    }

    fn token(&self, response: &ProviderTokenResponse) -> Result<Token, UnusableToken> {
        let mut token = token_from(response, self.clock.now())?;
        let resource_url = response.extra_fields().resource_url.clone();
        if let Some(resource_url) = &resource_url {
            // The API base travels with every message and the token: not in clear text.
            let base = crate::chat::qwen::oauth_base(resource_url);
            if !Url::parse(&base).is_ok_and(|url| crate::is_safe_transport(&url)) {
                return Err(UnusableToken(format!(
                    "its resource_url is not an https address (nor http to this machine): {}",
                    base.chars()
                        .filter(|c| !c.is_control())
                        .take(100)
                        .collect::<String>()
                )));
            }
        }
        token.resource_url = resource_url;
        Ok(token)
    }
}

#[async_trait]
impl OAuthFlow for QwenFlow {
    fn provider(&self) -> OAuthProvider {
        OAuthProvider::Qwen
    }

    async fn login(&self, prompt: &dyn UserPrompt) -> Result<Token, FlowError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let details: StandardDeviceAuthorizationResponse = self
            .client
            .exchange_device_code()
            .add_scopes(self.scopes.iter().cloned())
            .add_extra_param("code_challenge", challenge.as_str())
            .add_extra_param("code_challenge_method", challenge.method().as_str())
            .request_async(self.http.transport())
            .await
            .map_err(exchange_error)?;
        let user_code = details.user_code().secret();
        prompt.show(&format!("Device code: {user_code}"));
        prompt.show(&format!("Visit: {}", details.verification_uri().as_str()));
        prompt.show(&format!("Enter code: {user_code}"));
        if let Some(complete) = details.verification_uri_complete() {
            // The code is on screen; a browser that cannot open changes nothing.
            if let Err(error) = self.browser.open(complete.secret()).await {
                tracing::debug!(%error, "the device approval page was not opened");
            }
        }
        prompt.waiting(WAITING, false);
        let polled = self
            .client
            .exchange_device_access_token(&details)
            .add_extra_param("code_verifier", verifier.secret())
            .request_async(
                self.http.transport(),
                |interval| wait(prompt, interval),
                Some(MAX_DEVICE_WAIT),
            )
            .await;
        prompt.waiting(WAITING, true);
        let sent = [details.device_code().secret().as_str(), verifier.secret()];
        let response = polled.map_err(|e| redact_flow_error(poll_error(e), &sent))?;
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

/// Sleeps one polling interval (which `oauth2` stretches by 5 s on `slow_down`), showing the
/// user that the flow is waiting.
async fn wait(prompt: &dyn UserPrompt, interval: Duration) {
    let deadline = tokio::time::Instant::now() + poll_interval(interval);
    loop {
        prompt.waiting(WAITING, false);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(WAITING_TICK)).await;
    }
}

fn poll_error(error: RequestTokenError<HttpFailure, DeviceCodeErrorResponse>) -> FlowError {
    match error {
        RequestTokenError::ServerResponse(e) => match e.error() {
            DeviceCodeErrorResponseType::AccessDenied => FlowError::Denied(format!(
                "the code was not approved ({})",
                describe_oauth_error(&e)
            )),
            DeviceCodeErrorResponseType::ExpiredToken => FlowError::Expired(
                "the device code expired before it was approved; run the login again".to_owned(),
            ),
            _ => FlowError::Rejected(describe_oauth_error(&e)),
        },
        RequestTokenError::Request(failure) => {
            exchange_error(RequestTokenError::<_, BasicErrorResponse>::Request(failure))
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
            exchange_error(RequestTokenError::Other(String::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_endpoints_interval_is_held_to_a_sane_range() {
        // A hostile endpoint asking for a tight loop, or for a wait of a day.
        assert_eq!(poll_interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            poll_interval(Duration::from_secs(86_400)),
            Duration::from_secs(60)
        );
        // Real intervals (Qwen's 2 s, plus 5 s after a slow_down) are kept.
        assert_eq!(
            poll_interval(Duration::from_secs(7)),
            Duration::from_secs(7)
        );
    }
}
