//! OpenAI Codex (ChatGPT subscription): browser sign-in redirected to a fixed loopback port, with
//! the ChatGPT account id read from the `id_token`.
//!
//! Without a browser the user pastes the whole address the browser was sent to; a bare code is
//! refused, because only the address carries the state that proves it belongs to this sign-in.
//!
//! The device login (`--device`) needs no browser on this machine: the issuer hands out a user
//! code to enter at `{issuer}/codex/device` on any device, the flow polls until it is entered,
//! and the issuer then hands back an authorization code and its PKCE verifier, exchanged with
//! the redirect `{issuer}/deviceauth/callback`.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use llxprt_application::ports::{
    Browser, Clock, FlowError, LoginMethod, LoginRequest, OAuthFlow, RefreshError, UserPrompt,
};
use llxprt_domain::{BucketId, OAuthProvider, Secret, Token};
use oauth2::{
    AuthUrl, AuthorizationCode, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use serde::Deserialize;
use url::Url;

use super::http::{
    describe, exchange_error, new_client, parse_url, redact_flow_error, redact_refresh_error,
    refresh_error, token_from, HttpFailure, OAuthClient, OAuthConfigError, OAuthHttp,
    ProviderTokenResponse, UnusableToken,
};
use super::loopback::{
    BareCode, BrowserSignIn, CallbackServer, Loopback, DEFAULT_CALLBACK_TIMEOUT,
};

/// The path the issuer redirects to on the loopback port.
const CALLBACK_PATH: &str = "/auth/callback";

/// How long a device login waits for its code to be entered: the issuer's own limit.
pub const DEFAULT_DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The polling interval when the issuer gives none that can be read.
const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);

/// The range a device login's polling interval is held to, whatever the issuer says: no
/// hammering, and no wait so long that an approval goes unnoticed.
const DEVICE_INTERVAL_RANGE: (u64, u64) = (1, 60);

/// What a device login adds to its interval when the issuer says it polls too fast.
const DEVICE_SLOW_DOWN: Duration = Duration::from_secs(5);

/// How many polls in a row may fail on the network or a server error before the login gives
/// up (a blip is waited out; an outage is reported).
const DEVICE_POLL_FAILURES: u32 = 3;

/// How often the waiting line is refreshed while a device login polls.
const WAITING_TICK: Duration = Duration::from_secs(1);

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
    device: DeviceEndpoints,
    device_timeout: Duration,
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
        let device = DeviceEndpoints {
            user_code: parse_url(
                provider,
                "issuer",
                &format!("{issuer}/api/accounts/deviceauth/usercode"),
            )?,
            token: parse_url(
                provider,
                "issuer",
                &format!("{issuer}/api/accounts/deviceauth/token"),
            )?,
            verification: parse_url(provider, "issuer", &format!("{issuer}/codex/device"))?,
            redirect: RedirectUrl::from_url(parse_url(
                provider,
                "issuer",
                &format!("{issuer}/deviceauth/callback"),
            )?),
            client_id: config.client_id.clone(),
        };
        Ok(Self {
            client,
            device,
            device_timeout: DEFAULT_DEVICE_TIMEOUT,
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

    /// Changes how long a device login waits for its code to be entered (default
    /// [`DEFAULT_DEVICE_TIMEOUT`], the issuer's fifteen minutes).
    pub fn with_device_timeout(mut self, timeout: Duration) -> Self {
        self.device_timeout = timeout;
        self
    }

    /// The callback port, or the fallback (with a word to the user) when it is taken, on
    /// `127.0.0.1` and `[::1]` alike.
    async fn bind(&self, prompt: &dyn UserPrompt) -> Result<Loopback, FlowError> {
        let (port, fallback) = self.ports;
        let busy = |port: u16| {
            move |e: std::io::Error| {
                FlowError::Transient(format!("could not listen on local port {port}: {e}"))
            }
        };
        match Loopback::bind(port).await {
            Ok(loopback) => Ok(loopback),
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                prompt.show(&format!(
                    "Port {port} is busy (another sign-in may be running); using port {fallback} instead."
                ));
                Loopback::bind(fallback).await.map_err(busy(fallback))
            }
            Err(e) => Err(busy(port)(e)),
        }
    }

    /// The loopback sign-in: the browser comes back to a listener on the callback port.
    async fn browser_login(
        &self,
        bucket: &BucketId,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, FlowError> {
        let loopback = self.bind(prompt).await?;
        let port = loopback.port();
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
        let server = CallbackServer::start(loopback, CALLBACK_PATH, &state, bucket);
        let code = BrowserSignIn {
            bucket,
            url: &url,
            state: &state,
            bare_code: BareCode::Refused,
            timeout: self.callback_timeout,
            without_browser: Some(format!(
                "No browser here? `{}` signs in with a code entered on any other device.",
                device_command(bucket)
            )),
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

    /// The device login: a user code entered at the issuer's device page on any device.
    async fn device_login(
        &self,
        bucket: &BucketId,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, FlowError> {
        let again = device_command(bucket);
        let started = self.start_device_login().await?;
        prompt.show("Sign in to codex from any device with a browser:");
        prompt.show(&format!("Visit: {}", self.device.verification));
        prompt.show(&format!("Enter code: {}", started.user_code));
        prompt.show(&format!(
            "The code is valid for {} minutes.",
            self.device_timeout.as_secs().div_ceil(60)
        ));
        let what = format!(
            "Waiting for the code to be entered at {}",
            self.device.verification
        );
        prompt.waiting(&what, false);
        let approved = self
            .poll_device_login(&started, prompt, &what, &again)
            .await;
        prompt.waiting(&what, true);
        let approved = approved?;
        let response = self
            .client
            .clone()
            .set_redirect_uri(self.device.redirect.clone())
            .exchange_code(AuthorizationCode::new(
                approved.authorization_code.expose().to_owned(),
            ))
            .set_pkce_verifier(PkceCodeVerifier::new(
                approved.code_verifier.expose().to_owned(),
            ))
            .request_async(self.http.transport())
            .await
            .map_err(|e| {
                let sent = [
                    approved.authorization_code.expose(),
                    approved.code_verifier.expose(),
                ];
                redact_flow_error(exchange_error(e), &sent)
            })?;
        Ok(self.token(&response)?)
    }

    async fn start_device_login(&self) -> Result<DeviceStart, FlowError> {
        let body = serde_json::json!({ "client_id": self.device.client_id });
        let (status, answer) = self
            .http
            .post_json(&self.device.user_code, &body)
            .await
            .map_err(|e| FlowError::Transient(e.to_string()))?;
        match status {
            200 => DeviceStart::read(&answer).ok_or_else(|| {
                FlowError::Transient(
                    "the device login's answer could not be read (no user code)".to_owned(),
                )
            }),
            404 => Err(FlowError::Rejected(
                "this issuer offers no device login (HTTP 404); sign in with the browser instead"
                    .to_owned(),
            )),
            400..=499 if status != 408 && status != 429 => {
                Err(FlowError::Rejected(answer_error(status, &answer)))
            }
            _ => Err(FlowError::Transient(answer_error(status, &answer))),
        }
    }

    /// Polls at the issuer's interval until the code is entered, refused, or the time is up.
    async fn poll_device_login(
        &self,
        started: &DeviceStart,
        prompt: &dyn UserPrompt,
        what: &str,
        again: &str,
    ) -> Result<DeviceApproval, FlowError> {
        let deadline = tokio::time::Instant::now() + self.device_timeout;
        let body = serde_json::json!({
            "device_auth_id": started.device_auth_id.expose(),
            "user_code": started.user_code,
        });
        let mut failures = 0;
        let mut interval = started.interval;
        loop {
            wait_until(
                prompt,
                what,
                tokio::time::Instant::now() + interval,
                deadline,
            )
            .await;
            if tokio::time::Instant::now() >= deadline {
                return Err(FlowError::Expired(format!(
                    "the code was not entered within {} minutes; run `{again}` for a new one",
                    self.device_timeout.as_secs().div_ceil(60)
                )));
            }
            let failure = match self.http.post_json(&self.device.token, &body).await {
                Ok((200, answer)) => {
                    return DeviceApproval::read(&answer).ok_or_else(|| {
                        FlowError::Transient(
                            "the device login's approval could not be read".to_owned(),
                        )
                    })
                }
                // Not entered yet: the issuer answers 403 or 404 until it is.
                Ok((403 | 404, _)) => {
                    failures = 0;
                    continue;
                }
                // Too fast for the issuer: slow down as RFC 8628 §3.5 says, and go on.
                Ok((429, _)) => {
                    let slower = interval + DEVICE_SLOW_DOWN;
                    interval = slower.min(Duration::from_secs(DEVICE_INTERVAL_RANGE.1));
                    tracing::debug!(?interval, "the issuer asked the device login to slow down");
                    continue;
                }
                Ok((status @ 400..=499, answer)) if status != 408 => {
                    return Err(device_refusal(status, &answer, again))
                }
                Ok((status, answer)) => answer_error(status, &answer),
                Err(failure @ (HttpFailure::TooLarge | HttpFailure::Refused(_))) => {
                    return Err(FlowError::Transient(failure.to_string()))
                }
                Err(failure) => failure.to_string(),
            };
            failures += 1;
            tracing::debug!(failures, %failure, "a device login poll failed");
            if failures >= DEVICE_POLL_FAILURES {
                return Err(FlowError::Transient(failure));
            }
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
        self.browser_login(&BucketId::default_for(OAuthProvider::Codex), prompt)
            .await
    }

    async fn login_for(
        &self,
        request: &LoginRequest,
        prompt: &dyn UserPrompt,
    ) -> Result<Token, FlowError> {
        match request.method {
            LoginMethod::Usual => self.browser_login(&request.bucket, prompt).await,
            LoginMethod::Device => self.device_login(&request.bucket, prompt).await,
        }
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

/// The command that starts a device login into `bucket`.
fn device_command(bucket: &BucketId) -> String {
    if bucket.bucket.is_default() {
        "/auth codex login --device".to_owned()
    } else {
        format!("/auth codex login {} --device", bucket.bucket)
    }
}

/// The device login's endpoints and the client it signs in as.
struct DeviceEndpoints {
    user_code: Url,
    token: Url,
    verification: Url,
    redirect: RedirectUrl,
    client_id: String,
}

/// The issuer's answer to a device login's start.
struct DeviceStart {
    device_auth_id: Secret,
    user_code: String,
    interval: Duration,
}

impl DeviceStart {
    fn read(answer: &[u8]) -> Option<Self> {
        /// `interval` comes as a number or as a string holding one.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Interval {
            Number(f64),
            Text(String),
        }
        #[derive(Deserialize)]
        struct Wire {
            device_auth_id: String,
            #[serde(alias = "usercode")]
            user_code: String,
            interval: Option<Interval>,
        }
        let wire: Wire = serde_json::from_slice(answer).ok()?;
        let seconds = match wire.interval {
            Some(Interval::Number(n)) => Some(n),
            Some(Interval::Text(t)) => t.trim().parse().ok(),
            None => None,
        };
        let (low, high) = DEVICE_INTERVAL_RANGE;
        let interval = seconds
            .filter(|s| s.is_finite())
            .map_or(DEFAULT_DEVICE_INTERVAL, |s| {
                // Clamped first, so the conversion cannot overflow or go negative.
                Duration::from_secs_f64(s.clamp(low as f64, high as f64))
            });
        // The code is shown to the user: only a plain code is, never terminal controls.
        let user_code_is_plain = !wire.user_code.is_empty()
            && wire.user_code.len() <= 32
            && wire
                .user_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        (user_code_is_plain && !wire.device_auth_id.is_empty()).then(|| Self {
            device_auth_id: Secret::new(wire.device_auth_id),
            user_code: wire.user_code,
            interval,
        })
    }
}

/// The issuer's answer once the code was entered: what to exchange for tokens.
struct DeviceApproval {
    authorization_code: Secret,
    code_verifier: Secret,
}

impl DeviceApproval {
    fn read(answer: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Wire {
            authorization_code: String,
            code_verifier: String,
        }
        let wire: Wire = serde_json::from_slice(answer).ok()?;
        (!wire.authorization_code.is_empty() && !wire.code_verifier.is_empty()).then(|| Self {
            authorization_code: Secret::new(wire.authorization_code),
            code_verifier: Secret::new(wire.code_verifier),
        })
    }
}

/// Sleeps until `until` (or the deadline), showing that the login waits.
async fn wait_until(
    prompt: &dyn UserPrompt,
    what: &str,
    until: tokio::time::Instant,
    deadline: tokio::time::Instant,
) {
    let until = until.min(deadline);
    loop {
        prompt.waiting(what, false);
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(WAITING_TICK)).await;
    }
}

/// An answer's OAuth-style `error` (and description), or its status alone; never its body
/// otherwise, which could hold anything.
fn answer_error(status: u16, answer: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Wire {
        error: ErrorField,
        error_description: Option<String>,
    }
    /// `{"error": "code"}` or `{"error": {"code"|"type": …, "message": …}}`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Code(String),
        Object {
            #[serde(alias = "type")]
            code: Option<String>,
            message: Option<String>,
        },
    }
    match serde_json::from_slice::<Wire>(answer) {
        Ok(Wire {
            error: ErrorField::Code(code),
            error_description,
        }) => describe(&code, error_description.as_deref()),
        Ok(Wire {
            error: ErrorField::Object { code, message },
            ..
        }) => describe(code.as_deref().unwrap_or("error"), message.as_deref()),
        Err(_) => format!("HTTP {status}"),
    }
}

/// A poll the issuer refused for good.
fn device_refusal(status: u16, answer: &[u8], again: &str) -> FlowError {
    let text = answer_error(status, answer);
    if text.starts_with("access_denied") {
        FlowError::Denied(format!("the code was not approved ({text})"))
    } else if text.starts_with("expired_token") {
        FlowError::Expired(format!(
            "the code expired before it was entered; run `{again}` for a new one"
        ))
    } else {
        FlowError::Rejected(text)
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

    #[test]
    fn the_device_interval_is_a_number_or_a_string_held_to_a_sane_range() {
        let interval = |value: &str| {
            let answer =
                format!(r#"{{"device_auth_id":"d","user_code":"AB12-CD34","interval":{value}}}"#);
            DeviceStart::read(answer.as_bytes()).map(|s| s.interval)
        };
        assert_eq!(interval("5"), Some(Duration::from_secs(5)));
        assert_eq!(interval(r#""7""#), Some(Duration::from_secs(7)));
        assert_eq!(interval("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(interval("0"), Some(Duration::from_secs(1)));
        assert_eq!(interval("-3"), Some(Duration::from_secs(1)));
        assert_eq!(interval("86400"), Some(Duration::from_secs(60)));
        assert_eq!(interval(r#""soon""#), Some(DEFAULT_DEVICE_INTERVAL));
        assert_eq!(interval("null"), Some(DEFAULT_DEVICE_INTERVAL));
        let usercode = br#"{"device_auth_id":"d","usercode":"WXYZ-1234"}"#;
        assert_eq!(
            DeviceStart::read(usercode).map(|s| s.user_code).as_deref(),
            Some("WXYZ-1234")
        );
    }

    #[test]
    fn a_user_code_that_could_drive_the_terminal_is_refused() {
        for code in [r"\u001b]0;pwned\u0007", "AB CD", "", r"\u009b2J"] {
            let answer = format!(r#"{{"device_auth_id":"d","user_code":"{code}","interval":5}}"#);
            assert!(DeviceStart::read(answer.as_bytes()).is_none(), "{code}");
        }
    }

    proptest! {
        #[test]
        fn a_device_answer_is_read_without_panicking(answer in any::<Vec<u8>>(), n in any::<f64>()) {
            let _ = DeviceStart::read(&answer);
            let _ = DeviceApproval::read(&answer);
            let _ = answer_error(400, &answer);
            let numeric = format!(r#"{{"device_auth_id":"d","user_code":"A-1","interval":{n}}}"#);
            let _ = DeviceStart::read(numeric.as_bytes());
        }

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
