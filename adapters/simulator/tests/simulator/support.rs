//! What the simulator tests share: an HTTP client, PKCE, and one login per provider.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use llxprt_domain::OAuthProvider;
use llxprt_simulator::{Consent, SimulatorConfig, SimulatorHandle};
use rand::distr::{Alphanumeric, SampleString};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub(crate) const ANTHROPIC_SCOPES: &str = "org:create_api_key user:profile user:inference";
pub(crate) const GEMINI_SCOPES: &str = "https://www.googleapis.com/auth/cloud-platform \
     https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile";
pub(crate) const QWEN_SCOPES: &str = "openid profile email model.completion";
pub(crate) const CODEX_SCOPES: &str = "openid profile email offline_access";
pub(crate) const CODEX_REDIRECT: &str = "http://localhost:1455/auth/callback";
pub(crate) const QWEN_DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub(crate) fn client_id(provider: OAuthProvider) -> &'static str {
    SimulatorConfig::real_client_id(provider)
}

/// What the tests' requests say they are: real endpoints refuse requests without one.
pub(crate) const USER_AGENT: &str = "llxprt-simulator-tests/0.1";

/// A client like the real ones: no proxy, no automatic redirects, bounded waits.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A PKCE verifier and its S256 challenge.
pub(crate) fn pkce() -> (String, String) {
    let verifier = Alphanumeric.sample_string(&mut rand::rng(), 64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) fn url_with(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(base).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.to_string()
}

/// The value of a query parameter of a URL.
pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Sends and returns status and JSON body (Null when the body is not JSON).
pub(crate) async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub(crate) async fn send_raw(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

/// The `error` code of an OAuth error body.
pub(crate) fn oauth_error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("<none>")
}

pub(crate) fn str_of<'v>(body: &'v Value, field: &str) -> &'v str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string field '{field}'"))
}

pub(crate) fn expect_redirect(consent: Consent) -> String {
    match consent {
        Consent::Redirect(url) => url.expose().to_owned(),
        other => panic!("expected a redirect to the client, got {other:?}"),
    }
}

// ---- Anthropic ----

pub(crate) struct AuthorizeRequest {
    pub(crate) url: String,
    pub(crate) verifier: String,
    pub(crate) state: String,
    pub(crate) redirect_uri: String,
}

pub(crate) fn anthropic_authorize(sim: &SimulatorHandle) -> AuthorizeRequest {
    anthropic_authorize_with(sim, &[])
}

/// Anthropic's authorize URL as a correct client builds it, with `overrides` replacing or
/// (with an empty value) removing parameters.
pub(crate) fn anthropic_authorize_with(
    sim: &SimulatorHandle,
    overrides: &[(&str, &str)],
) -> AuthorizeRequest {
    let urls = &sim.endpoints().anthropic;
    let (verifier, challenge) = pkce();
    let state = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let params = [
        ("code", "true"),
        ("client_id", client_id(OAuthProvider::Anthropic)),
        ("response_type", "code"),
        ("redirect_uri", urls.redirect_uri.as_str()),
        ("scope", ANTHROPIC_SCOPES),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", state.as_str()),
    ];
    AuthorizeRequest {
        url: build(&urls.authorize_url, &params, overrides),
        verifier,
        state,
        redirect_uri: urls.redirect_uri.clone(),
    }
}

fn build(base: &str, params: &[(&str, &str)], overrides: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    pairs.extend(overrides.iter().filter(|(_, v)| !v.is_empty()).copied());
    url_with(base, &pairs)
}

/// Consents on Anthropic's page and splits the shown `CODE#STATE`.
pub(crate) async fn anthropic_code(
    sim: &SimulatorHandle,
    request: &AuthorizeRequest,
) -> (String, String) {
    match sim.consent(&request.url).await.unwrap() {
        Consent::CodeShown(shown) => {
            let (code, state) = shown.expose().split_once('#').unwrap();
            (code.to_owned(), state.to_owned())
        }
        other => panic!("expected the code page, got {other:?}"),
    }
}

pub(crate) fn anthropic_exchange_body(
    request: &AuthorizeRequest,
    code: &str,
    state: &str,
) -> Value {
    json!({
        "grant_type": "authorization_code",
        "code": code,
        "state": state,
        "client_id": client_id(OAuthProvider::Anthropic),
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.verifier,
    })
}

/// A whole Anthropic login: the token response.
pub(crate) async fn anthropic_login(sim: &SimulatorHandle) -> Value {
    let request = anthropic_authorize(sim);
    let (code, state) = anthropic_code(sim, &request).await;
    let (status, body) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&anthropic_exchange_body(&request, &code, &state)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
    body
}

pub(crate) async fn anthropic_refresh(
    sim: &SimulatorHandle,
    refresh_token: &str,
) -> (StatusCode, Value) {
    send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&json!({
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id(OAuthProvider::Anthropic),
            })),
    )
    .await
}

/// `POST /v1/messages` with an OAuth token, as a correct client sends it.
pub(crate) fn anthropic_messages(sim: &SimulatorHandle, access_token: &str) -> RequestBuilder {
    http()
        .post(format!(
            "{}/v1/messages",
            sim.endpoints().anthropic.base_url
        ))
        .bearer_auth(access_token)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "oauth-2025-04-20")
        .json(&anthropic_message_body("hello"))
}

pub(crate) fn anthropic_message_body(text: &str) -> Value {
    json!({"model": "claude-sonnet-4", "max_tokens": 64,
           "messages": [{"role": "user", "content": text}]})
}

// ---- Gemini ----

pub(crate) fn gemini_authorize_with(
    sim: &SimulatorHandle,
    redirect_uri: &str,
    overrides: &[(&str, &str)],
) -> AuthorizeRequest {
    let urls = &sim.endpoints().gemini;
    let (verifier, challenge) = pkce();
    let state = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let params = [
        ("client_id", client_id(OAuthProvider::Gemini)),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", GEMINI_SCOPES),
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", state.as_str()),
    ];
    AuthorizeRequest {
        url: build(&urls.authorize_url, &params, overrides),
        verifier,
        state,
        redirect_uri: redirect_uri.to_owned(),
    }
}

pub(crate) const GEMINI_REDIRECT: &str = "http://127.0.0.1:45123/oauth2callback";

pub(crate) fn gemini_exchange_form(
    request: &AuthorizeRequest,
    code: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("client_id", client_id(OAuthProvider::Gemini).to_owned()),
        (
            "client_secret",
            SimulatorConfig::REAL_GEMINI_CLIENT_SECRET.to_owned(),
        ),
        ("code_verifier", request.verifier.clone()),
    ]
}

pub(crate) async fn gemini_login(sim: &SimulatorHandle) -> Value {
    let request = gemini_authorize_with(sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let (status, body) = send(
        http()
            .post(&sim.endpoints().gemini.token_url)
            .form(&gemini_exchange_form(&request, &code)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
    body
}

// ---- Qwen ----

pub(crate) struct DeviceStart {
    pub(crate) verifier: String,
    pub(crate) body: Value,
}

pub(crate) async fn qwen_device_code(sim: &SimulatorHandle) -> DeviceStart {
    let (verifier, challenge) = pkce();
    let (status, body) = send(
        http()
            .post(&sim.endpoints().qwen.device_authorization_url)
            .form(&[
                ("client_id", client_id(OAuthProvider::Qwen)),
                ("scope", QWEN_SCOPES),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
    DeviceStart { verifier, body }
}

pub(crate) async fn qwen_poll(sim: &SimulatorHandle, start: &DeviceStart) -> (StatusCode, Value) {
    qwen_poll_with(sim, str_of(&start.body, "device_code"), &start.verifier).await
}

pub(crate) async fn qwen_poll_with(
    sim: &SimulatorHandle,
    device_code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    send(http().post(&sim.endpoints().qwen.token_url).form(&[
        ("grant_type", QWEN_DEVICE_GRANT),
        ("client_id", client_id(OAuthProvider::Qwen)),
        ("device_code", device_code),
        ("code_verifier", verifier),
    ]))
    .await
}

/// A whole Qwen device login (approved by the simulated browser): the token response.
pub(crate) async fn qwen_login(sim: &SimulatorHandle) -> Value {
    let start = qwen_device_code(sim).await;
    let page = sim
        .browse(str_of(&start.body, "verification_uri_complete"))
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{page:?}");
    let (status, body) = qwen_poll(sim, &start).await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
    body
}

pub(crate) fn chat_completion_body(text: &str) -> Value {
    json!({"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": text}]})
}

// ---- Codex ----

pub(crate) fn codex_authorize_with(
    sim: &SimulatorHandle,
    redirect_uri: &str,
    overrides: &[(&str, &str)],
) -> AuthorizeRequest {
    let issuer = &sim.endpoints().codex.issuer;
    let (verifier, challenge) = pkce();
    let state = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let params = [
        ("response_type", "code"),
        ("client_id", client_id(OAuthProvider::Codex)),
        ("redirect_uri", redirect_uri),
        ("scope", CODEX_SCOPES),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state.as_str()),
        ("originator", "codex_cli_rs"),
    ];
    AuthorizeRequest {
        url: build(&format!("{issuer}/oauth/authorize"), &params, overrides),
        verifier,
        state,
        redirect_uri: redirect_uri.to_owned(),
    }
}

pub(crate) fn codex_exchange_form(
    request: &AuthorizeRequest,
    code: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("client_id", client_id(OAuthProvider::Codex).to_owned()),
        ("code_verifier", request.verifier.clone()),
    ]
}

pub(crate) async fn codex_login(sim: &SimulatorHandle) -> Value {
    let request = codex_authorize_with(sim, CODEX_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let (status, body) = send(
        http()
            .post(format!("{}/oauth/token", sim.endpoints().codex.issuer))
            .form(&codex_exchange_form(&request, &code)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
    body
}

/// The payload of an unsigned JWT.
pub(crate) fn jwt_payload(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub(crate) fn codex_account_id(token_response: &Value) -> String {
    jwt_payload(str_of(token_response, "id_token"))["https://api.openai.com/auth"]
        ["chatgpt_account_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `POST {base}/responses` as Codex sends it.
pub(crate) fn codex_responses(
    sim: &SimulatorHandle,
    access_token: &str,
    account_id: &str,
) -> RequestBuilder {
    http()
        .post(format!("{}/responses", sim.endpoints().codex.base_url))
        .bearer_auth(access_token)
        .header("chatgpt-account-id", account_id)
        .header("originator", "codex_cli_rs")
        .json(&json!({
            "model": "gpt-5.5",
            "instructions": "be brief",
            "input": [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "hello"}]}],
            "stream": true,
            "store": false,
        }))
}

/// Server-sent events as (event name, data JSON); `[DONE]` data becomes a string.
pub(crate) fn parse_sse(text: &str) -> Vec<(Option<String>, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (event, data)
        })
        .collect()
}
