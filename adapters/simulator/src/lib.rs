//! The provider simulator: strict fakes of every provider on loopback, for tests and `--sandbox`.
//!
//! One axum server on `127.0.0.1` (ephemeral port), started inside the calling process, speaks
//! the protocols of `providers.md` for Anthropic, Gemini, Qwen, Codex and the OpenAI key API.
//! It is strict on purpose: whatever the real provider would reject, it rejects (PKCE verified,
//! `state` and `redirect_uri` checked, codes single-use, rotating refresh tokens single-use,
//! wrong content types and missing headers refused). A fake that accepts a broken client hides
//! the bug until a real user meets it.
//!
//! # Starting it
//!
//! ```no_run
//! # async fn demo() -> Result<(), llxprt_simulator::StartError> {
//! use llxprt_simulator::{Simulator, SimulatorConfig};
//!
//! let sim = Simulator::start().await?; // or Simulator::start_with(SimulatorConfig { .. }).await?
//! let token_url: &str = &sim.endpoints().anthropic.token_url;
//! # let _ = token_url;
//! # Ok(()) }
//! ```
//!
//! It must be started inside a tokio runtime. The server runs as a task of that runtime and
//! stops when the last clone of the
//! [`SimulatorHandle`] is dropped (or at [`SimulatorHandle::shutdown`]). Keep that runtime
//! polling while other processes talk to it (use `tokio::process` or a multi-thread runtime).
//! HTTP clients that talk to it should disable system proxies (`reqwest::ClientBuilder::no_proxy`).
//!
//! # Endpoints
//!
//! [`SimulatorHandle::endpoints`] returns every URL a client needs, as settings values
//! (cli.md's keys): [`AnthropicEndpoints`], [`GeminiEndpoints`], [`QwenEndpoints`],
//! [`CodexEndpoints`], [`OpenAiEndpoints`]. API paths are appended to bases exactly as cli.md
//! says (`{base_url}/v1/messages`, `{issuer}/oauth/token`, ...). Qwen tokens carry
//! `resource_url` = [`QwenEndpoints::resource_url`] (`http://127.0.0.1:PORT/qwen`, to which the
//! client appends `/v1`).
//!
//! # Identities
//!
//! Client ids are the real providers' ([`SimulatorConfig::real_client_id`]), so clients on
//! default settings pass; Gemini also needs its documented `client_secret`, in the form body or
//! as HTTP Basic (RFC 6749 §2.3.1). Scopes must be exactly the documented set (any order).
//! Accounts are keyed by ([`OAuthProvider`], account name). Each provider has a *login account*
//! (default `user1`, see [`SimulatorHandle::set_login_account`]): the one that consents at the
//! authorize page or approves a device code. API keys belong to accounts too: the defaults
//! ([`SimulatorConfig::default_api_key`]: `sim-anthropic-key`, `sim-gemini-key`,
//! `sim-qwen-key`, `sim-openai-key`) belong to the account `api-key` of
//! `chat_provider.oauth_provider()` (the `openai` key to `codex`'s accounts).
//!
//! # Protocol, per provider
//!
//! Authorize pages (`GET` with query) answer `302` to the `redirect_uri` with `code` and
//! `state` (consent is automatic), or with `error=` per RFC 6749 §4.1.2.1; a bad `client_id` or
//! `redirect_uri` gets a `400` page and no redirect. Token endpoints answer OAuth JSON and
//! OAuth-style errors `{"error", "error_description"}`.
//!
//! - **Anthropic**: authorize needs `code=true`, `response_type=code`, PKCE S256, `state`, and
//!   `redirect_uri` = [`AnthropicEndpoints::redirect_uri`] (the simulator's stand-in for
//!   platform.claude.com's code page), which shows
//!   `<code id="auth-code">CODE#STATE</code>`. The token endpoint takes **JSON only** (code
//!   exchange and refresh): the exchange needs `grant_type, code, state, client_id,
//!   redirect_uri, code_verifier` and checks `state`; refresh tokens rotate and a reused one gets
//!   `400 invalid_grant`. Messages: `POST {base_url}/v1/messages` with `anthropic-version` and
//!   either `Authorization: Bearer` + `anthropic-beta: oauth-2025-04-20`, or `x-api-key` and no
//!   oauth beta; the body needs `model`, `max_tokens` and `messages` (as the real API does);
//!   `"stream": true` answers Anthropic's server-sent events. A revoked account gets `403`.
//! - **Gemini**: authorize also needs `access_type=offline`; `redirect_uri` is
//!   `http://localhost:PORT/oauth2callback` or `http://127.0.0.1:PORT/oauth2callback`, or the
//!   manual page [`GeminiEndpoints::manual_redirect_uri`] (shows `<code id="auth-code">CODE`).
//!   Token endpoint: form only, `client_secret` required; refresh tokens do not rotate and
//!   refresh responses carry none. Key API: `POST {base_url}/v1beta/models/{model}:generateContent`
//!   with `x-goog-api-key` (a bad key is `400 API_KEY_INVALID`, as Google does). OAuth: `POST
//!   {code_assist_base_url}/v1internal:loadCodeAssist` (gives `cloudaicompanionProject`), then
//!   `…/v1internal:generateContent` with `{model, project, request: {contents}}`; another
//!   account's project is `403`.
//! - **Qwen**: device flow (RFC 8628 + PKCE), all form-encoded. Polling faster than `interval`
//!   between two polls gets `slow_down` and the interval grows by
//!   [`SimulatorConfig::device_slow_down_secs`]; then `authorization_pending`, `access_denied`,
//!   `expired_token`; success verifies `code_verifier`. Visiting `verification_uri_complete`
//!   (GET) approves as the login account. Refresh tokens do not rotate and refresh responses
//!   omit `refresh_token`. Chat: `POST {resource_url}/v1/chat/completions` with the Bearer
//!   token, `POST {base_url}/chat/completions` (DashScope) with `Authorization: Bearer KEY`.
//! - **Codex**: authorize also needs `id_token_add_organizations=true`,
//!   `codex_cli_simplified_flow=true`, `originator=codex_cli_rs`, and `redirect_uri`
//!   `http://localhost:{1455|1457}/auth/callback` ([`SimulatorConfig::codex_callback_ports`]).
//!   Token endpoint: form only; responses add `id_token`, an unsigned JWT whose payload has
//!   `email` and `["https://api.openai.com/auth"].chatgpt_account_id`; refresh tokens rotate and
//!   a reused one gets `401 {"error": "refresh_token_reused"}` (a revoked one
//!   `refresh_token_invalidated`). Device login: JSON `{client_id}` to
//!   `{issuer}/api/accounts/deviceauth/usercode` (`interval` comes as a string), the user visits
//!   `{issuer}/codex/device?user_code=CODE`, polling `{issuer}/api/accounts/deviceauth/token`
//!   answers `403` while pending, then `authorization_code` + `code_verifier` to exchange with
//!   `redirect_uri` = `{issuer}/deviceauth/callback`. Responses: `POST {base_url}/responses`
//!   with `"stream": true`, `Authorization: Bearer`, `chatgpt-account-id` (the token's account,
//!   else `403`) and `originator: codex_cli_rs`; answers server-sent events
//!   `response.created`, `response.output_text.delta`…, `response.completed`.
//! - **OpenAI** (key): `POST {base_url}/chat/completions` with `Authorization: Bearer KEY`.
//!
//! Chat completions and Anthropic Messages stream when the body says `"stream": true` (and
//! only then: without it they answer one JSON body); Gemini streams at
//! `…/models/{model}:streamGenerateContent?alt=sse` and Code Assist's
//! `…/v1internal:streamGenerateContent?alt=sse` (without `alt=sse`, as Google does, one JSON
//! array of responses). Every stream is `text/event-stream`, one event per chunk. Every
//! reply is deterministic: `[simulated PROVIDER/ACCOUNT] you said: TEXT` (PROVIDER is
//! `anthropic`, `gemini`, `qwen`, `codex` or `openai`). Unknown, expired or revoked tokens get
//! `401` (Anthropic: `403` for revoked).
//!
//! # Usage windows
//!
//! Every answer to a subscription's chat request (Anthropic with an OAuth token, Codex)
//! reports the account's usage windows as the real service does, refusals included:
//! Anthropic's `anthropic-ratelimit-unified-{5h,7d}-utilization` (fractions) and `-reset` (Unix
//! seconds), `-reset` (the binding window: a used-up one, else the most used) and `-status`
//! (`rejected` when a window is at 100 %, `allowed_warning` from [`WARNING_PERCENT`], else
//! `allowed`); Codex's `x-codex-{primary,secondary}-used-percent`, `-window-minutes` (300,
//! 10080), `-reset-at`, and `x-codex-credits-has-credits: false`, `-unlimited: false`,
//! `-balance: 0`. API keys, Gemini and Qwen report none. Each window is 0 % used and resets at
//! the simulator's start plus its length until [`SimulatorHandle::set_usage`] says otherwise,
//! so the figures do not move between answers. A window at 100 % or more refuses the request
//! after counting it (`chat_requests` and [`Counters::usage_limit_refusals`]): Anthropic `429`
//! `rate_limit_error` with `retry-after` and `-reset` at that window's reset; Codex `429`
//! `{"error":{"type":"usage_limit_reached","resets_at":…,"resets_in_seconds":…}}`. A forced
//! failure queued for the account comes first.
//!
//! # Controls
//!
//! Methods of [`SimulatorHandle`], and the same over HTTP under [`Endpoints::controls`]
//! (`/_sim`) for child processes and sandbox users (JSON bodies; `{p}` is an OAuth provider name,
//! except for `api-keys` where it is a chat provider name):
//!
//! | method | HTTP |
//! | --- | --- |
//! | [`set_login_account`](SimulatorHandle::set_login_account) / [`login_account`](SimulatorHandle::login_account) | `PUT` / `GET /_sim/{p}/login-account` `{"account":"user2"}` |
//! | [`set_token_lifetime`](SimulatorHandle::set_token_lifetime) | `PUT /_sim/{p}/token-lifetime` `{"seconds":5}` |
//! | [`deny_next_consent`](SimulatorHandle::deny_next_consent) | `POST /_sim/{p}/deny-next-consent` |
//! | [`deny_next_device_authorization`](SimulatorHandle::deny_next_device_authorization) | `POST /_sim/{p}/deny-next-device` |
//! | [`expire_next_device_authorization`](SimulatorHandle::expire_next_device_authorization) | `POST /_sim/{p}/expire-next-device` |
//! | [`hold_next_refresh`](SimulatorHandle::hold_next_refresh) | `POST /_sim/{p}/hold-next-refresh` |
//! | [`slow_down_next_device_polls`](SimulatorHandle::slow_down_next_device_polls) | `POST /_sim/{p}/slow-down-next-polls` `{"count":1}` |
//! | [`requests_seen`](SimulatorHandle::requests_seen) | `GET /_sim/requests` |
//! | [`set_code_assist_account`](SimulatorHandle::set_code_assist_account) | `PUT /_sim/gemini/accounts/{a}/code-assist` `{"kind":"new_free_tier"}` |
//! | [`expire_access_tokens`](SimulatorHandle::expire_access_tokens) | `POST /_sim/{p}/accounts/{a}/expire-tokens` |
//! | [`revoke`](SimulatorHandle::revoke) | `POST /_sim/{p}/accounts/{a}/revoke` |
//! | [`fail_next_chat_requests`](SimulatorHandle::fail_next_chat_requests) | `POST /_sim/{p}/accounts/{a}/fail-next` `{"count":2,"failure":{"kind":"rate_limited","retry_after_secs":30}}` |
//! | [`slow_next_chat_replies`](SimulatorHandle::slow_next_chat_replies) | `POST /_sim/{p}/accounts/{a}/slow-next` `{"count":1,"seconds":30,"pause":"after_first_delta"}` (`pause`: `before_reply` by default, `after_first_delta`, `between_pieces`, `fail_after_first_delta`) |
//! | [`set_usage`](SimulatorHandle::set_usage) | `PUT /_sim/{p}/accounts/{a}/usage` `{"windows":[{"window":"5h","percent":96,"resets_in_secs":2700}]}` (`resets_in_secs` optional) |
//! | [`counters`](SimulatorHandle::counters) | `GET /_sim/{p}/accounts/{a}/counters` |
//! | [`provider_counters`](SimulatorHandle::provider_counters) | `GET /_sim/{p}/counters` |
//! | [`add_api_key`](SimulatorHandle::add_api_key) / [`remove_api_key`](SimulatorHandle::remove_api_key) | `POST` / `DELETE /_sim/{chat}/api-keys` `{"key":"k","account":"a"}` |
//! | [`issued_secrets`](SimulatorHandle::issued_secrets) | `GET /_sim/secrets` |
//!
//! # A browser that consents
//!
//! [`SimulatorHandle::consent`] opens an authorize URL like a browser whose user clicks
//! "allow": it returns the redirect to the client's loopback callback without following it
//! ([`Consent::Redirect`]), or the code a provider page shows for pasting ([`Consent::CodeShown`],
//! `CODE#STATE` for Anthropic), or the error a page shows. [`SimulatorHandle::browse`] follows
//! every redirect, the client's callback included, like a real browser, and returns the last
//! page; use it for `verification_uri_complete` and Codex's device page too.

// Handlers refuse a request by returning the finished error response (`Result<_, Response>`,
// the usual axum idiom); its size on that path does not matter to a test fake.
mod browser;
#[allow(clippy::result_large_err)]
mod chat;
#[allow(clippy::result_large_err)]
mod control;
#[allow(clippy::result_large_err)]
mod device;
mod identity;
mod oauth;
pub mod sandbox;
mod state;
mod usage;
mod wire;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use llxprt_domain::{ChatProvider, OAuthProvider, Secret};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use browser::{BrowseError, Consent, Page};
pub use identity::SeenRequest;
pub use usage::{usage_windows, UsageError, UsageSetting, WARNING_PERCENT};

use state::State;

/// Starts simulators.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// Starts a simulator with the default configuration on `127.0.0.1` and an ephemeral port,
    /// as a task of the current tokio runtime.
    ///
    /// # Errors
    /// [`StartError`] when the port cannot be bound.
    pub async fn start() -> Result<SimulatorHandle, StartError> {
        Self::start_with(SimulatorConfig::default()).await
    }

    /// Starts a simulator with `config` on `127.0.0.1` and an ephemeral port.
    ///
    /// # Errors
    /// [`StartError`] when the port cannot be bound.
    pub async fn start_with(config: SimulatorConfig) -> Result<SimulatorHandle, StartError> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let endpoints = Endpoints::at(&format!("http://{addr}"));
        let (release, released) = watch::channel(());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config, endpoints.clone())),
            endpoints,
            released,
        });
        let http = reqwest::Client::builder()
            .user_agent(SIMULATED_BROWSER)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| StartError::Client(err.to_string()))?;
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                // A dropped sender also stops the server: either way the owner is gone.
                let _ = stopped.await;
            });
            if let Err(err) = serving.await {
                tracing::warn!(%err, "the provider simulator stopped with an error");
            }
        });
        tracing::debug!(%addr, "provider simulator listening");
        Ok(SimulatorHandle {
            shared,
            server: Arc::new(ServerTask {
                stop: Mutex::new(Some(stop)),
                task: Mutex::new(Some(task)),
                release,
            }),
            http,
        })
    }
}

/// The `User-Agent` of the simulated browser ([`SimulatorHandle::consent`],
/// [`SimulatorHandle::browse`]), so that its page loads can be told apart from a client's
/// requests in [`SimulatorHandle::requests_seen`].
pub const SIMULATED_BROWSER: &str = "Mozilla/5.0 (llxprt simulated browser)";

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The loopback port could not be bound.
    #[error("could not listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The HTTP client of the consent helpers could not be built.
    #[error("could not build the simulated browser's HTTP client: {0}")]
    Client(String),
}

/// How the simulator behaves; [`Default`] gives the real providers' identities and short,
/// test-friendly device intervals.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Lifetime of issued access tokens (`expires_in`), for every provider until
    /// [`SimulatorHandle::set_token_lifetime`] changes one. Default 3600; 0 issues tokens that are
    /// already expired.
    pub token_lifetime_secs: u64,
    /// How long an authorization code can be exchanged. Default 600.
    pub code_lifetime_secs: u64,
    /// The device flows' `interval`. Default 1; 0 never answers `slow_down`.
    pub device_interval_secs: u64,
    /// How much `slow_down` adds to a device code's interval. Default 5 (RFC 8628).
    pub device_slow_down_secs: u64,
    /// The device flows' `expires_in`. Default 900.
    pub device_expires_in_secs: u64,
    /// The client id each provider accepts. Default: the real ones.
    pub client_ids: BTreeMap<OAuthProvider, String>,
    /// The client secret Gemini's token endpoint requires. Default: the real installed-app one.
    pub gemini_client_secret: String,
    /// The loopback ports Codex accepts in `http://localhost:PORT/auth/callback`. Default
    /// `[1455, 1457]`, the real allow-list.
    pub codex_callback_ports: Vec<u16>,
    /// The valid API keys. Default: [`SimulatorConfig::default_api_key`] of every chat provider,
    /// owned by the account `api-key`.
    pub api_keys: Vec<ApiKey>,
    /// The login account of every provider at start. Default `user1`.
    pub login_account: String,
    /// The models Codex offers a ChatGPT account; any other gets `400` "The 'M' model is not
    /// supported when using Codex with a ChatGPT account." Default: `gpt-5.5`, `gpt-5.4`,
    /// `gpt-5.4-mini`, `gpt-5.3-codex` (mid-2026).
    pub codex_models: Vec<String>,
}

impl SimulatorConfig {
    /// The real client id of `provider` (providers.md), which the simulator accepts by default.
    pub fn real_client_id(provider: OAuthProvider) -> &'static str {
        match provider {
            OAuthProvider::Anthropic => "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
            OAuthProvider::Gemini => {
                "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
            }
            OAuthProvider::Qwen => "f0304373b74a44d2b584a3fb70ca9e56",
            OAuthProvider::Codex => "app_EMoamEEZ73f0CkXaXp7hrann",
        }
    }

    /// Gemini's real installed-app client secret (Google documents it as not secret).
    pub const REAL_GEMINI_CLIENT_SECRET: &'static str = "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";

    /// The API key of `provider` that a default simulator accepts: obviously fake,
    /// `sim-{provider}-key`.
    pub fn default_api_key(provider: ChatProvider) -> Secret {
        Secret::new(format!("sim-{}-key", provider.as_str()))
    }
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 3600,
            code_lifetime_secs: 600,
            device_interval_secs: 1,
            device_slow_down_secs: 5,
            device_expires_in_secs: 900,
            client_ids: OAuthProvider::ALL
                .into_iter()
                .map(|p| (p, Self::real_client_id(p).to_owned()))
                .collect(),
            gemini_client_secret: Self::REAL_GEMINI_CLIENT_SECRET.to_owned(),
            codex_callback_ports: vec![1455, 1457],
            api_keys: ChatProvider::ALL
                .into_iter()
                .map(|provider| ApiKey {
                    provider,
                    key: Self::default_api_key(provider),
                    account: API_KEY_ACCOUNT.to_owned(),
                })
                .collect(),
            login_account: "user1".to_owned(),
            codex_models: ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// The account that owns the default API keys.
pub const API_KEY_ACCOUNT: &str = "api-key";

/// A valid API key and the account its requests count against (an account of
/// `provider.oauth_provider()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The chat provider whose key API accepts it.
    pub provider: ChatProvider,
    /// The key.
    pub key: Secret,
    /// The account name its requests count against.
    pub account: String,
}

/// Every URL a client needs, per provider, as settings values (cli.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `http://127.0.0.1:PORT`, the root of everything below.
    pub root: String,
    /// The HTTP controls: `{root}/_sim`.
    pub controls: String,
    /// Anthropic.
    pub anthropic: AnthropicEndpoints,
    /// Gemini.
    pub gemini: GeminiEndpoints,
    /// Qwen.
    pub qwen: QwenEndpoints,
    /// Codex (OpenAI with a ChatGPT subscription).
    pub codex: CodexEndpoints,
    /// OpenAI with an API key.
    pub openai: OpenAiEndpoints,
}

/// Anthropic's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicEndpoints {
    /// The authorize page (claude.ai/oauth/authorize).
    pub authorize_url: String,
    /// The token endpoint (JSON only).
    pub token_url: String,
    /// The code page the authorize page redirects to, showing `CODE#STATE`; send it as
    /// `redirect_uri`.
    pub redirect_uri: String,
    /// The stand-in for the token endpoint Anthropic used until mid-2026
    /// (`console.anthropic.com/v1/oauth/token`): it answers `404 not_found_error` to everything.
    pub old_token_url: String,
    /// The API base: `{base_url}/v1/messages`.
    pub base_url: String,
}

/// Gemini's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiEndpoints {
    /// The authorize page (accounts.google.com/o/oauth2/v2/auth).
    pub authorize_url: String,
    /// The token endpoint (form only, client secret required).
    pub token_url: String,
    /// The key API base: `{base_url}/v1beta/models/{model}:generateContent`.
    pub base_url: String,
    /// The Code Assist base: `{code_assist_base_url}/v1internal:loadCodeAssist` and
    /// `…:generateContent`.
    pub code_assist_base_url: String,
    /// The manual (no loopback) redirect page, standing in for codeassist.google.com/authcode:
    /// shows the code to paste.
    pub manual_redirect_uri: String,
}

/// Qwen's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenEndpoints {
    /// The device authorization endpoint.
    pub device_authorization_url: String,
    /// The token endpoint (device grant and refresh, form only).
    pub token_url: String,
    /// The DashScope-compatible key API base (ends in `/v1`): `{base_url}/chat/completions`.
    pub base_url: String,
    /// The `resource_url` issued with tokens; the OAuth API base is `{resource_url}/v1`.
    pub resource_url: String,
    /// The `verification_uri` shown to the user.
    pub verification_uri: String,
}

/// Codex's URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexEndpoints {
    /// The issuer: `{issuer}/oauth/authorize`, `{issuer}/oauth/token`,
    /// `{issuer}/api/accounts/deviceauth/…`, `{issuer}/codex/device`,
    /// `{issuer}/deviceauth/callback`.
    pub issuer: String,
    /// The Responses API base: `{base_url}/responses`.
    pub base_url: String,
}

/// OpenAI's key API URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiEndpoints {
    /// The chat completions base: `{base_url}/chat/completions`.
    pub base_url: String,
}

impl Endpoints {
    fn at(root: &str) -> Self {
        Self {
            root: root.to_owned(),
            controls: format!("{root}/_sim"),
            anthropic: AnthropicEndpoints {
                authorize_url: format!("{root}/anthropic/oauth/authorize"),
                token_url: format!("{root}/anthropic/v1/oauth/token"),
                redirect_uri: format!("{root}/anthropic/oauth/code/callback"),
                old_token_url: format!("{root}{}", identity::OLD_ANTHROPIC_TOKEN_PATH),
                base_url: format!("{root}/anthropic"),
            },
            gemini: GeminiEndpoints {
                authorize_url: format!("{root}/gemini/o/oauth2/v2/auth"),
                token_url: format!("{root}/gemini/token"),
                base_url: format!("{root}/gemini"),
                code_assist_base_url: format!("{root}/gemini/code-assist"),
                manual_redirect_uri: format!("{root}/gemini/authcode"),
            },
            qwen: QwenEndpoints {
                device_authorization_url: format!("{root}/qwen/api/v1/oauth2/device/code"),
                token_url: format!("{root}/qwen/api/v1/oauth2/token"),
                base_url: format!("{root}/dashscope/compatible-mode/v1"),
                resource_url: format!("{root}/qwen"),
                verification_uri: format!("{root}/qwen/authorize"),
            },
            codex: CodexEndpoints {
                issuer: format!("{root}/codex"),
                base_url: format!("{root}/codex/backend-api/codex"),
            },
            openai: OpenAiEndpoints {
                base_url: format!("{root}/openai/v1"),
            },
        }
    }
}

/// What the simulator counted for one account (or, summed, for one provider).
///
/// Events before the account is known (authorize hits, device code requests) count against the
/// provider's login account at that moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// `GET`s of the authorize page, valid or not.
    pub authorize_hits: u64,
    /// Authorization codes and device codes successfully exchanged for tokens.
    pub token_exchanges: u64,
    /// Successful refreshes.
    pub refreshes: u64,
    /// Refreshes that presented an already-used rotating refresh token.
    pub reused_refresh_tokens: u64,
    /// Refreshes refused because the account was revoked.
    pub rejected_refreshes: u64,
    /// Accepted device code requests (Qwen device code, Codex user code).
    pub device_code_requests: u64,
    /// Authenticated chat requests, including the ones answered with a forced failure.
    pub chat_requests: u64,
    /// Chat requests answered with a `text/event-stream` (the request asked to stream:
    /// `"stream": true`, or Gemini's `streamGenerateContent?alt=sse`).
    pub streamed_replies: u64,
    /// Chat requests refused because the account's token was expired or revoked.
    pub rejected_chat_requests: u64,
    /// Gemini `loadCodeAssist` calls.
    pub load_code_assist: u64,
    /// Device polls answered `slow_down` (`429` at Qwen).
    pub device_slow_downs: u64,
    /// Chat requests refused with `429` because a usage window of the account was used up
    /// (see [`SimulatorHandle::set_usage`]); each is counted in `chat_requests` too.
    #[serde(default)]
    pub usage_limit_refusals: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.authorize_hits += other.authorize_hits;
        self.token_exchanges += other.token_exchanges;
        self.refreshes += other.refreshes;
        self.reused_refresh_tokens += other.reused_refresh_tokens;
        self.rejected_refreshes += other.rejected_refreshes;
        self.device_code_requests += other.device_code_requests;
        self.chat_requests += other.chat_requests;
        self.streamed_replies += other.streamed_replies;
        self.rejected_chat_requests += other.rejected_chat_requests;
        self.load_code_assist += other.load_code_assist;
        self.device_slow_downs += other.device_slow_downs;
        self.usage_limit_refusals += other.usage_limit_refusals;
    }
}

/// An answer forced on an account's next chat requests, in the provider's own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForcedFailure {
    /// `429` with `retry-after: S`; Anthropic adds `anthropic-ratelimit-unified-reset` (Unix
    /// seconds), Codex a JSON `usage_limit_reached` error with `resets_in_seconds`, Gemini a
    /// `RetryInfo` detail.
    RateLimited {
        /// Seconds until the limit resets.
        retry_after_secs: u64,
    },
    /// `402` with a billing message.
    PaymentRequired,
    /// `500`.
    ServerError,
    /// `429` whose `retry-after` is an HTTP date `retry_after_secs` from now (RFC 9110 allows
    /// both forms), with no other reset information.
    RateLimitedUntilDate {
        /// Seconds from now to the date sent.
        retry_after_secs: u64,
    },
    /// Anthropic's answer to a subscription token used by a third-party app on an account with
    /// no extra usage left: `400 invalid_request_error` "Third-party apps now draw from your
    /// extra usage, …". Elsewhere a `402`.
    ExtraUsageExhausted,
    /// The provider's policy refusal of the account: Anthropic's `400` "only authorized for use
    /// with Claude Code"; Gemini's `403` with `reasonCode: UNSUPPORTED_CLIENT`; Qwen's ended free
    /// tier, `401 invalid access token` (force it twice: a refresh does not help); Codex and
    /// OpenAI have none and answer a plain `403`.
    PolicyRefusal,
    /// A CDN's HTML page with `403` (a challenge), not the provider's own answer.
    CdnChallenge,
}

/// How Gemini Code Assist sees an account (providers.md, "Gemini (Code Assist)"); set per
/// account with [`SimulatorHandle::set_code_assist_account`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeAssistAccount {
    /// Already set up: `loadCodeAssist` answers `currentTier` and the account's project.
    #[default]
    SetUp,
    /// A new account of the free tier: no `currentTier`; `onboardUser` with `free-tier` and no
    /// project (one sent gets `412`) starts an operation that is done at its first poll and
    /// gives the project.
    NewFreeTier,
    /// A Workspace or Standard/Enterprise account: it needs the user's Google Cloud project.
    /// `loadCodeAssist` with `cloudaicompanionProject` (and `metadata.duetProject`) answers
    /// `standard-tier` with that project; without one, no `currentTier` and a tier that needs a
    /// user-defined project.
    NeedsProject,
    /// A personal account Code Assist no longer serves to this client: `403`
    /// `UNSUPPORTED_CLIENT` at `loadCodeAssist`.
    Personal,
    /// No tier: `allowedTiers` empty, `ineligibleTiers[].reasonMessage` says why.
    Ineligible,
}

/// Where a slowed chat answer waits (see [`SimulatorHandle::slow_next_chat_replies`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pause {
    /// Nothing is answered, not even the status line, until the delay has passed.
    #[default]
    BeforeReply,
    /// A streamed reply sends its first piece of text, then stalls for the delay before the
    /// rest: a stream that stops mid-reply. An answer that does not stream waits before it is
    /// sent, as with [`Pause::BeforeReply`].
    AfterFirstDelta,
    /// A streamed reply waits the delay before each piece of text after the first: a long
    /// answer that keeps coming. An answer that does not stream waits before it is sent.
    BetweenPieces,
    /// A streamed reply sends its first piece of text, waits the delay, then fails mid-stream
    /// the way the provider does (Anthropic's `event: error` `overloaded_error`, Codex's
    /// `response.failed`, an `error` object in chat completions' and Gemini's `data:`) and
    /// ends. An answer that does not stream waits before it is sent.
    FailAfterFirstDelta,
}

/// A running simulator: its URLs, its controls and a consenting browser. Cheap to clone; the
/// server stops when the last clone is dropped.
#[derive(Clone)]
pub struct SimulatorHandle {
    shared: Arc<Shared>,
    server: Arc<ServerTask>,
    http: reqwest::Client,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("root", &self.shared.endpoints.root)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// Every URL a client needs.
    pub fn endpoints(&self) -> &Endpoints {
        &self.shared.endpoints
    }

    /// Makes `account` the one that consents at `provider`'s authorize page and approves its
    /// device codes from now on.
    pub fn set_login_account(&self, provider: OAuthProvider, account: &str) {
        self.shared.lock().set_login_account(provider, account);
    }

    /// The account that consents for `provider` now.
    pub fn login_account(&self, provider: OAuthProvider) -> String {
        self.shared.lock().login_account(provider).to_owned()
    }

    /// Sets the lifetime of `provider`'s access tokens issued from now on (0: already expired).
    pub fn set_token_lifetime(&self, provider: OAuthProvider, seconds: u64) {
        self.shared.lock().set_token_lifetime(provider, seconds);
    }

    /// Makes `provider`'s next authorize request answer `error=access_denied`.
    pub fn deny_next_consent(&self, provider: OAuthProvider) {
        self.shared.lock().deny_next_consent(provider);
    }

    /// Makes the next device code `provider` issues (Qwen device code, Codex user code) end in
    /// denial: polls answer `access_denied` and its page says so.
    pub fn deny_next_device_authorization(&self, provider: OAuthProvider) {
        self.shared
            .lock()
            .preset_next_device(provider, state::DeviceOutcome::Denied);
    }

    /// Makes the next device code `provider` issues expire at once: polls answer
    /// `expired_token`.
    pub fn expire_next_device_authorization(&self, provider: OAuthProvider) {
        self.shared
            .lock()
            .preset_next_device(provider, state::DeviceOutcome::Expired);
    }

    /// Answers the next `count` device polls of `provider` (Qwen) with `slow_down` (`429`), as
    /// if they came too fast, and adds [`SimulatorConfig::device_slow_down_secs`] to the device
    /// code's interval each time: a client that does not wait the longer interval is then
    /// slowed down again by the timing rule.
    pub fn slow_down_next_device_polls(&self, provider: OAuthProvider, count: u32) {
        self.shared.lock().slow_down_next_polls(provider, count);
    }

    /// Makes `provider`'s next successful refresh do everything a refresh does (a rotating
    /// refresh token is spent and a new one issued; `refreshes` counts it) and then never answer:
    /// the request stays open until the client gives up or the simulator stops. For tests of a
    /// client killed between the provider's rotation and its own write.
    pub fn hold_next_refresh(&self, provider: OAuthProvider) {
        self.shared.lock().hold_next_refresh(provider);
    }

    /// Expires every access token of the account now (its refresh tokens stay valid).
    pub fn expire_access_tokens(&self, provider: OAuthProvider, account: &str) {
        self.shared.lock().expire_access_tokens(provider, account);
    }

    /// Revokes every token issued so far to the account: its access tokens get `401` (Anthropic
    /// `403`), its refresh tokens `invalid_grant`. A new login grants fresh, valid tokens.
    pub fn revoke(&self, provider: OAuthProvider, account: &str) {
        self.shared.lock().revoke(provider, account);
    }

    /// Answers the account's next `count` authenticated chat requests with `failure` (after any
    /// failures already queued).
    pub fn fail_next_chat_requests(
        &self,
        provider: OAuthProvider,
        account: &str,
        count: u32,
        failure: ForcedFailure,
    ) {
        self.shared
            .lock()
            .fail_next(provider, account, count, failure);
    }

    /// Makes the answers to the account's next `count` authenticated chat requests (after any
    /// already slowed) wait `delay`, where `pause` says. A forced failure waits too, before it
    /// is sent. The request is counted when it arrives, so a test can see that it is waiting.
    /// Stopping the simulator ends a wait early: the answer becomes a `503`, or the stream ends
    /// unfinished.
    pub fn slow_next_chat_replies(
        &self,
        provider: OAuthProvider,
        account: &str,
        count: u32,
        delay: Duration,
        pause: Pause,
    ) {
        self.shared
            .lock()
            .slow_next(provider, account, count, state::SlowReply { delay, pause });
    }

    /// Sets how much of the account's usage windows is used, as its subscription's answers
    /// report it from now on (Anthropic's `anthropic-ratelimit-unified-*` headers, Codex's
    /// `x-codex-*`); a window not given keeps its figures. Each setting is
    /// `(window, percent, resets_in)`: the share used in percent (100 or more: the provider
    /// refuses the account's chat requests with a `429` until the window resets), and when the
    /// window resets from now (`None`: its reset stays, by default the simulator's start plus
    /// the window's length). Once its reset has passed a window starts again at 0 %.
    ///
    /// The windows are [`usage_windows`]: Anthropic `5h` and `7d`, Codex `5h` and `weekly`.
    /// API keys report none.
    ///
    /// # Errors
    /// [`UsageError`] when a window is not one the provider reports or a share is negative or
    /// not finite; then nothing is set.
    pub fn set_usage(
        &self,
        provider: OAuthProvider,
        account: &str,
        windows: &[UsageSetting],
    ) -> Result<(), UsageError> {
        self.shared.lock().set_usage(provider, account, windows)
    }

    /// What was counted for one account.
    pub fn counters(&self, provider: OAuthProvider, account: &str) -> Counters {
        self.shared.lock().counters(provider, account)
    }

    /// What was counted for every account of `provider`, summed.
    pub fn provider_counters(&self, provider: OAuthProvider) -> Counters {
        self.shared.lock().provider_counters(provider)
    }

    /// Accepts `key` on `provider`'s key API, counting its requests against `account` (an
    /// account of `provider.oauth_provider()`).
    pub fn add_api_key(&self, provider: ChatProvider, key: &Secret, account: &str) {
        self.shared
            .lock()
            .add_api_key(provider, key.expose(), account);
    }

    /// Stops accepting `key` on `provider`'s key API.
    pub fn remove_api_key(&self, provider: ChatProvider, key: &Secret) {
        self.shared.lock().remove_api_key(provider, key.expose());
    }

    /// Makes Code Assist see the Gemini `account` as `kind` from now on.
    pub fn set_code_assist_account(&self, account: &str, kind: CodeAssistAccount) {
        self.shared.lock().set_code_assist_account(account, kind);
    }

    /// The newest requests the simulator received (up to 2000, controls excluded), oldest
    /// first, with the `User-Agent` each one sent.
    pub fn requests_seen(&self) -> Vec<SeenRequest> {
        self.shared.lock().requests_seen()
    }

    /// Every secret the simulator issued or was shown so far: access, refresh and id tokens,
    /// authorization and device codes, PKCE verifiers it received or handed out, and the API
    /// keys it accepts. For tests that check nothing leaks into output or logs.
    pub fn issued_secrets(&self) -> Vec<Secret> {
        self.shared
            .lock()
            .secrets()
            .into_iter()
            .map(Secret::new)
            .collect()
    }

    /// Stops the server and waits for it to finish (every clone of this handle stops working).
    pub async fn shutdown(self) {
        self.server.release.send_replace(());
        let stop = self
            .server
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self
            .server
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The server task; dropping the last handle aborts it.
struct ServerTask {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Lets held refresh answers and slowed chat answers go (by a send, or by being dropped),
    /// so that stopping the server does not wait on them.
    release: watch::Sender<()>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// What every request handler shares.
struct Shared {
    state: Mutex<State>,
    endpoints: Endpoints,
    /// Changes when held refresh answers and slowed chat answers may end (see
    /// [`SimulatorHandle::hold_next_refresh`], [`SimulatorHandle::slow_next_chat_replies`]).
    released: watch::Receiver<()>,
}

impl Shared {
    /// The simulator's state. A handler that panicked left it consistent enough for a fake, so
    /// poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type Sim = axum::extract::State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> axum::Router {
    oauth::routes()
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            oauth::hold_held_refreshes,
        ))
        .merge(device::routes())
        .merge(chat::routes().layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            chat::delay_answers,
        )))
        .merge(control::routes())
        .fallback(|| async { wire::json_error(axum::http::StatusCode::NOT_FOUND, "not_found") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            identity::check,
        ))
        .with_state(shared)
}
