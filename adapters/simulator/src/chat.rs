//! The chat APIs: Anthropic Messages, Gemini generateContent and Code Assist, OpenAI-compatible
//! chat completions (Qwen, DashScope, OpenAI) and Codex Responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use llxprt_domain::{ChatProvider, OAuthProvider};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::state::{self, Rejection, SlowReply, State};
use super::{usage, wire};
use super::{CodeAssistAccount, ForcedFailure, Pause, Shared, Sim};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/anthropic/v1/messages", post(anthropic_messages))
        .route(
            "/gemini/v1beta/models/{model_action}",
            post(gemini_generate),
        )
        .route(
            "/gemini/code-assist/v1internal:loadCodeAssist",
            post(load_code_assist),
        )
        .route(
            "/gemini/code-assist/v1internal:generateContent",
            post(|sim: Sim, h: HeaderMap, b: Bytes| async move {
                code_assist_generate(&sim, &h, &b, None)
            }),
        )
        .route(
            "/gemini/code-assist/v1internal:streamGenerateContent",
            post(
                |sim: Sim, Query(q): Query<AltQuery>, h: HeaderMap, b: Bytes| async move {
                    code_assist_generate(&sim, &h, &b, Some(q.sse()))
                },
            ),
        )
        .route(
            "/gemini/code-assist/v1internal:onboardUser",
            post(onboard_user),
        )
        .route(
            "/gemini/code-assist/v1internal/operations/{id}",
            get(onboarding_operation),
        )
        .route(
            "/qwen/v1/chat/completions",
            post(|sim: Sim, h: HeaderMap, b: Bytes| async move {
                chat_completions(&sim, &h, &b, Api::QwenOAuth)
            }),
        )
        .route(
            "/dashscope/compatible-mode/v1/chat/completions",
            post(|sim: Sim, h: HeaderMap, b: Bytes| async move {
                chat_completions(&sim, &h, &b, Api::DashScope)
            }),
        )
        .route(
            "/openai/v1/chat/completions",
            post(|sim: Sim, h: HeaderMap, b: Bytes| async move {
                chat_completions(&sim, &h, &b, Api::OpenAi)
            }),
        )
        .route("/codex/backend-api/codex/responses", post(codex_responses))
}

/// One simulated API: decides the reply's provider name and the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Anthropic,
    GeminiKey,
    CodeAssist,
    QwenOAuth,
    DashScope,
    OpenAi,
    Codex,
}

/// What went wrong, in words every API's error shape can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invalid,
    Unauthenticated,
    Forbidden,
    RateLimited,
    Billing,
    Server,
}

impl Api {
    fn provider(self) -> OAuthProvider {
        match self {
            Self::Anthropic => OAuthProvider::Anthropic,
            Self::GeminiKey | Self::CodeAssist => OAuthProvider::Gemini,
            Self::QwenOAuth | Self::DashScope => OAuthProvider::Qwen,
            Self::OpenAi | Self::Codex => OAuthProvider::Codex,
        }
    }

    /// The name in replies: the chat provider, except `codex` for the subscription API.
    fn reply_name(self) -> &'static str {
        match self {
            Self::Codex => "codex",
            Self::OpenAi => ChatProvider::OpenAi.as_str(),
            other => other.provider().as_str(),
        }
    }

    /// An error in the provider's own shape.
    fn error(self, status: StatusCode, kind: Kind, message: &str) -> Response {
        let body = match self {
            Self::Anthropic => {
                let kind = match kind {
                    Kind::Invalid => "invalid_request_error",
                    Kind::Unauthenticated => "authentication_error",
                    Kind::Forbidden => "permission_error",
                    Kind::RateLimited => "rate_limit_error",
                    Kind::Billing => "billing_error",
                    Kind::Server => "api_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Self::GeminiKey | Self::CodeAssist => {
                let status_name = match kind {
                    Kind::Invalid => "INVALID_ARGUMENT",
                    Kind::Unauthenticated => "UNAUTHENTICATED",
                    Kind::Forbidden | Kind::Billing => "PERMISSION_DENIED",
                    Kind::RateLimited => "RESOURCE_EXHAUSTED",
                    Kind::Server => "INTERNAL",
                };
                json!({"error": {"code": status.as_u16(), "message": message, "status": status_name}})
            }
            Self::QwenOAuth | Self::DashScope | Self::OpenAi | Self::Codex => {
                let kind = match kind {
                    Kind::Invalid => "invalid_request_error",
                    Kind::Unauthenticated => "invalid_api_key",
                    Kind::Forbidden => "permission_denied",
                    Kind::RateLimited => "rate_limit_exceeded",
                    Kind::Billing => "insufficient_quota",
                    Kind::Server => "server_error",
                };
                json!({"error": {"message": message, "type": kind, "code": kind}})
            }
        };
        (status, Json(body)).into_response()
    }

    /// The event a stream ends with when the provider fails in the middle of a reply.
    fn stream_failure(self) -> String {
        match self {
            Self::Anthropic => sse_event(
                Some("error"),
                &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            Self::GeminiKey | Self::CodeAssist => sse_event(
                None,
                &json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
            ),
            Self::QwenOAuth | Self::DashScope | Self::OpenAi => sse_event(
                None,
                &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "code": null}}),
            ),
            Self::Codex => sse_event(
                Some("response.failed"),
                &json!({"type": "response.failed", "response": {"status": "failed",
                        "error": {"code": "server_error", "message": "The server had an error while processing your request."}}}),
            ),
        }
    }

    fn invalid(self, message: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, Kind::Invalid, message)
    }

    fn unauthenticated(self, message: &str) -> Response {
        self.error(StatusCode::UNAUTHORIZED, Kind::Unauthenticated, message)
    }

    /// A bearer token refused: `401`, except Anthropic's `403` for a revoked one.
    fn rejected(self, rejection: Rejection) -> Response {
        match (self, rejection) {
            (Self::Anthropic, Rejection::Revoked) => self.error(
                StatusCode::FORBIDDEN,
                Kind::Forbidden,
                "OAuth token has been revoked. Please obtain a new token.",
            ),
            (_, Rejection::Expired) => self.unauthenticated("OAuth token has expired"),
            (_, Rejection::Revoked) => self.unauthenticated("OAuth token has been revoked"),
            (_, Rejection::Unknown) => self.unauthenticated("invalid access token"),
        }
    }

    /// The answer forced on this request, in the provider's shape.
    fn forced(self, failure: ForcedFailure) -> Response {
        match failure {
            ForcedFailure::PaymentRequired => self.error(
                StatusCode::PAYMENT_REQUIRED,
                Kind::Billing,
                "Your credit balance is too low to access this API.",
            ),
            ForcedFailure::ServerError => self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                Kind::Server,
                "simulated internal error",
            ),
            ForcedFailure::RateLimited { retry_after_secs } => self.rate_limited(retry_after_secs),
            ForcedFailure::RateLimitedUntilDate { retry_after_secs } => {
                let at = wire::now_unix().saturating_add(retry_after_secs);
                let date = i64::try_from(at)
                    .ok()
                    .and_then(|at| jiff::Timestamp::from_second(at).ok())
                    .map(|at| {
                        jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&at)
                    });
                let mut response = self.error(
                    StatusCode::TOO_MANY_REQUESTS,
                    Kind::RateLimited,
                    "simulated rate limit reached",
                );
                if let Some(Ok(date)) = date {
                    if let Ok(value) = HeaderValue::from_str(&date) {
                        response.headers_mut().insert(header::RETRY_AFTER, value);
                    }
                }
                response
            }
            ForcedFailure::ExtraUsageExhausted => match self {
                Self::Anthropic => self.error(
                    StatusCode::BAD_REQUEST,
                    Kind::Invalid,
                    "Third-party apps now draw from your extra usage, not your plan limits. Add more at claude.ai/settings/usage and keep going.",
                ),
                _ => self.forced(ForcedFailure::PaymentRequired),
            },
            ForcedFailure::PolicyRefusal => match self {
                Self::Anthropic => self.error(
                    StatusCode::BAD_REQUEST,
                    Kind::Invalid,
                    "This credential is only authorized for use with Claude Code and cannot be used for other API requests.",
                ),
                Self::GeminiKey | Self::CodeAssist => (
                    StatusCode::FORBIDDEN,
                    Json(json!({"error": {
                        "code": 403,
                        "message": "This client is no longer supported for Gemini Code Assist for individuals. Use a Gemini API key, or a Google Workspace or Code Assist Standard/Enterprise account.",
                        "status": "PERMISSION_DENIED",
                        "details": [{
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "UNSUPPORTED_CLIENT",
                            "domain": "cloudcode-pa.googleapis.com",
                        }],
                    }})),
                )
                    .into_response(),
                Self::QwenOAuth | Self::DashScope => self.unauthenticated("invalid access token"),
                Self::OpenAi | Self::Codex => self.error(
                    StatusCode::FORBIDDEN,
                    Kind::Forbidden,
                    "this account may not use this client",
                ),
            },
            ForcedFailure::CdnChallenge => super::identity::cdn_challenge(),
        }
    }

    fn rate_limited(self, retry_after_secs: u64) -> Response {
        let message = "simulated rate limit reached";
        let mut response = match self {
            Self::Codex => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {
                    "type": "usage_limit_reached",
                    "message": "The usage limit has been reached",
                    "plan_type": "plus",
                    "resets_in_seconds": retry_after_secs,
                }})),
            )
                .into_response(),
            Self::GeminiKey | Self::CodeAssist => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {
                    "code": 429,
                    "message": message,
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{retry_after_secs}s"),
                    }],
                }})),
            )
                .into_response(),
            _ => self.error(StatusCode::TOO_MANY_REQUESTS, Kind::RateLimited, message),
        };
        let headers = response.headers_mut();
        // Google says how long in the body's RetryInfo only.
        if !matches!(self, Self::GeminiKey | Self::CodeAssist) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if self == Self::Anthropic {
            let reset = wire::now_unix() + retry_after_secs;
            headers.insert(
                "anthropic-ratelimit-unified-reset",
                HeaderValue::from(reset),
            );
            headers.insert(
                "anthropic-ratelimit-unified-status",
                HeaderValue::from_static("rejected"),
            );
        }
        response
    }

    /// Authenticates a bearer access token of this API's provider.
    fn bearer_account(self, state: &mut State, headers: &HeaderMap) -> Result<String, Response> {
        let token = wire::bearer(headers)
            .ok_or_else(|| self.unauthenticated("missing Authorization: Bearer header"))?;
        state
            .authenticate_bearer(self.provider(), token)
            .map_err(|rejection| self.rejected(rejection))
    }

    /// Authenticates an API key sent as `Authorization: Bearer` (OpenAI-compatible APIs).
    fn bearer_key_account(
        self,
        state: &State,
        headers: &HeaderMap,
        chat: ChatProvider,
    ) -> Result<String, Response> {
        let key = wire::bearer(headers)
            .ok_or_else(|| self.unauthenticated("missing Authorization: Bearer header"))?;
        state
            .authenticate_key(chat, key)
            .ok_or_else(|| self.unauthenticated("Incorrect API key provided"))
    }

    /// Counts the request and answers a forced failure if one is queued (held back by a queued
    /// wait); otherwise hands the reply's wait, if one is queued, to the caller.
    fn admit(self, state: &mut State, account: &str) -> Result<Option<SlowReply>, Response> {
        let admission = state.admit(self.provider(), account);
        match admission.failure {
            Some(failure) => Err(delayed(self.forced(failure), admission.slow)),
            None => Ok(admission.slow),
        }
    }

    /// The provider's `429` when one of the account's usage windows is used up (counted as a
    /// usage-limit refusal): Anthropic's `rate_limit_error` with `retry-after` until that
    /// window resets, Codex's `usage_limit_reached` with `resets_at` and `resets_in_seconds`.
    fn refuse_if_used_up(
        self,
        state: &mut State,
        account: &str,
        slow: Option<SlowReply>,
    ) -> Result<(), Response> {
        let windows = state.usage(self.provider(), account);
        let Some(window) = usage::refusing(&windows) else {
            return Ok(());
        };
        state.count_usage_refusal(self.provider(), account);
        let now = wire::now_unix();
        let mut refusal = match self {
            Self::Codex => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {
                    "type": "usage_limit_reached",
                    "message": "The usage limit has been reached",
                    "plan_type": "plus",
                    "resets_at": window.resets_at,
                    "resets_in_seconds": window.resets_at.saturating_sub(now),
                }})),
            )
                .into_response(),
            _ => {
                let mut refusal = self.error(
                    StatusCode::TOO_MANY_REQUESTS,
                    Kind::RateLimited,
                    "This request would exceed your account's rate limit. Please try again later.",
                );
                usage::add_retry_after(window, now, &mut refusal);
                refusal.headers_mut().insert(
                    "anthropic-ratelimit-unified-reset",
                    HeaderValue::from(window.resets_at),
                );
                refusal
            }
        };
        refusal = delayed(refusal, slow);
        Err(refusal)
    }

    fn reply(self, account: &str, said: &str) -> String {
        format!(
            "[simulated {}/{account}] you said: {said}",
            self.reply_name()
        )
    }

    /// The JSON body of a chat request, refusing any other content type.
    fn body(self, headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
        if !wire::has_content_type(headers, "application/json") {
            return Err(self.invalid("Content-Type must be application/json"));
        }
        match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(self.invalid("the body is not a JSON object")),
        }
    }
}

fn model_of(api: Api, body: &Value) -> Result<String, Response> {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| api.invalid("model: field required"))
}

// ---- Anthropic ----

async fn anthropic_messages(
    sim: Sim,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let api = Api::Anthropic;
    let body = api.body(&headers, &body)?;
    let mut state = sim.lock();
    let (account, subscription) = anthropic_account(&mut state, &headers)?;
    let answer = anthropic_answer(&sim, &mut state, &account, subscription, &body);
    if !subscription {
        // An API key has no unified windows.
        return answer;
    }
    Ok(with_usage(&mut state, api, &account, answer))
}

/// Answers an authenticated Messages request; a subscription's is refused once one of its
/// usage windows is used up.
fn anthropic_answer(
    sim: &Shared,
    state: &mut State,
    account: &str,
    subscription: bool,
    body: &Value,
) -> Result<Response, Response> {
    let api = Api::Anthropic;
    let model = model_of(api, body)?;
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(api.invalid("max_tokens: field required"));
    }
    let said = last_user_text(body.get("messages"), "content")
        .ok_or_else(|| api.invalid("messages: at least one user message is required"))?;
    let slow = api.admit(state, account)?;
    if subscription {
        api.refuse_if_used_up(state, account, slow)?;
    }
    let text = api.reply(account, &said);
    let id = format!("msg_sim_{}", wire::random_token(20));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        state.count_streamed_reply(api.provider(), account);
        return Ok(anthropic_stream(sim, &id, &model, &text, slow));
    }
    let reply = Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": said.len(), "output_tokens": text.len()},
    }));
    Ok(delayed(reply.into_response(), slow))
}

/// Anthropic's two ways in: an OAuth token with the oauth beta, or an API key without it. The
/// account, and whether it came in with its subscription's token.
fn anthropic_account(state: &mut State, headers: &HeaderMap) -> Result<(String, bool), Response> {
    let api = Api::Anthropic;
    match wire::header_str(headers, "anthropic-version") {
        Some("2023-06-01") => {}
        Some(_) => return Err(api.invalid("anthropic-version: unsupported version")),
        None => return Err(api.invalid("anthropic-version: header is required")),
    }
    let oauth_beta = wire::header_str(headers, "anthropic-beta")
        .is_some_and(|betas| betas.split(',').any(|b| b.trim() == "oauth-2025-04-20"));
    match (
        wire::bearer(headers),
        wire::header_str(headers, "x-api-key"),
    ) {
        (Some(_), Some(_)) => {
            Err(api.invalid("send either Authorization: Bearer or x-api-key, not both"))
        }
        (Some(token), None) => {
            if !oauth_beta {
                return Err(api.unauthenticated("OAuth authentication is currently not supported."));
            }
            state
                .authenticate_bearer(OAuthProvider::Anthropic, token)
                .map(|account| (account, true))
                .map_err(|rejection| api.rejected(rejection))
        }
        (None, Some(key)) => {
            if oauth_beta {
                return Err(api.unauthenticated(
                    "the oauth-2025-04-20 beta requires an OAuth token, not an API key",
                ));
            }
            state
                .authenticate_key(ChatProvider::Anthropic, key)
                .map(|account| (account, false))
                .ok_or_else(|| api.unauthenticated("invalid x-api-key"))
        }
        (None, None) => Err(api.unauthenticated("x-api-key header is required")),
    }
}

fn anthropic_stream(
    sim: &Shared,
    id: &str,
    model: &str,
    text: &str,
    slow: Option<SlowReply>,
) -> Response {
    let mut events = vec![sse_event(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        }}),
    )];
    events.push(sse_event(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
    ));
    let first_delta = events.len();
    for piece in wire::stream_pieces(text) {
        events.push(sse_event(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(sse_event(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(sse_event(
        Some("message_delta"),
        &json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": text.len()}}),
    ));
    events.push(sse_event(
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    ));
    sse(sim, Api::Anthropic, events, first_delta, slow)
}

// ---- Gemini ----

/// `POST /v1beta/models/{model}:generateContent` with `x-goog-api-key`.
async fn gemini_generate(
    sim: Sim,
    Path(model_action): Path<String>,
    Query(query): Query<AltQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let api = Api::GeminiKey;
    let (model, streaming) = match model_action.split_once(':') {
        Some((model, "generateContent")) => (model, None),
        Some((model, "streamGenerateContent")) => (model, Some(query.sse())),
        _ => return Err(api.error(StatusCode::NOT_FOUND, Kind::Invalid, "unknown method")),
    };
    let body = api.body(&headers, &body)?;
    let mut state = sim.lock();
    // Google's answers: no key is 403, a wrong key is 400 API_KEY_INVALID.
    let Some(key) = wire::header_str(&headers, "x-goog-api-key") else {
        return Err(api.error(
            StatusCode::FORBIDDEN,
            Kind::Forbidden,
            "Method doesn't allow unregistered callers. Please use an API key.",
        ));
    };
    let account = state
        .authenticate_key(ChatProvider::Gemini, key)
        .ok_or_else(|| {
            api.invalid("API key not valid. Please pass a valid API key. (API_KEY_INVALID)")
        })?;
    let said = gemini_user_text(body.get("contents"))
        .ok_or_else(|| api.invalid("contents: at least one user part with text is required"))?;
    let slow = api.admit(&mut state, &account)?;
    let text = api.reply(&account, &said);
    if let Some(sse) = streaming {
        if sse {
            state.count_streamed_reply(api.provider(), &account);
        }
        return Ok(gemini_stream(&sim, api, model, &text, sse, slow));
    }
    let reply = Json(gemini_response(model, &text));
    Ok(delayed(reply.into_response(), slow))
}

/// `?alt=sse`: whether a `streamGenerateContent` answers server-sent events (else a JSON array).
#[derive(serde::Deserialize)]
struct AltQuery {
    alt: Option<String>,
}

impl AltQuery {
    fn sse(&self) -> bool {
        self.alt.as_deref() == Some("sse")
    }
}

/// A `streamGenerateContent` answer: one response per piece (Code Assist wraps each in
/// `response`), the last with `finishReason`; server-sent events with `alt=sse`, else the
/// responses as one JSON array.
fn gemini_stream(
    sim: &Shared,
    api: Api,
    model: &str,
    text: &str,
    sse_events: bool,
    slow: Option<SlowReply>,
) -> Response {
    let pieces = wire::stream_pieces(text);
    let last = pieces.len().saturating_sub(1);
    let responses: Vec<Value> = pieces
        .iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut candidate =
                json!({"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0});
            if index == last {
                candidate["finishReason"] = json!("STOP");
            }
            let response = json!({"candidates": [candidate], "modelVersion": model});
            match api {
                Api::CodeAssist => json!({"response": response,
                    "traceId": format!("sim-trace-{}", wire::random_token(12))}),
                _ => response,
            }
        })
        .collect();
    if !sse_events {
        return delayed(Json(Value::Array(responses)).into_response(), slow);
    }
    let events = responses.iter().map(|r| sse_event(None, r)).collect();
    sse(sim, api, events, 0, slow)
}

async fn load_code_assist(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, Response> {
    let api = Api::CodeAssist;
    let body = api.body(&headers, &body)?;
    let mut state = sim.lock();
    let account = api.bearer_account(&mut state, &headers)?;
    state.count_load_code_assist(&account);
    let sent = body
        .get("cloudaicompanionProject")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let duet = body
        .get("metadata")
        .and_then(|m| m.get("duetProject"))
        .and_then(Value::as_str);
    if sent.is_some() && duet != sent.as_deref() {
        return Err(api.invalid("metadata.duetProject must name the cloudaicompanionProject"));
    }
    let free =
        json!({"id": "free-tier", "name": "Gemini Code Assist for individuals", "isDefault": true});
    let standard = json!({"id": "standard-tier", "name": "Gemini Code Assist Standard",
                          "isDefault": true, "userDefinedCloudaicompanionProject": true});
    let answer = match state.code_assist_account(&account) {
        CodeAssistAccount::SetUp => json!({
            "currentTier": free,
            "allowedTiers": [free],
            "cloudaicompanionProject": state.project_of(&account),
        }),
        CodeAssistAccount::NewFreeTier => json!({"allowedTiers": [free]}),
        CodeAssistAccount::NeedsProject => match sent {
            Some(project) => {
                state.use_project(&account, &project);
                json!({"currentTier": standard, "allowedTiers": [standard],
                       "cloudaicompanionProject": project})
            }
            None => json!({"allowedTiers": [standard]}),
        },
        CodeAssistAccount::Personal => {
            return Err(api.forced(ForcedFailure::PolicyRefusal));
        }
        CodeAssistAccount::Ineligible => json!({
            "allowedTiers": [],
            "ineligibleTiers": [{
                "reasonCode": "INELIGIBLE_ACCOUNT",
                "reasonMessage": "Your account is not eligible for Gemini Code Assist: it is managed by an organization that has not enabled it. Ask your administrator.",
                "tierId": "free-tier",
            }],
        }),
    };
    Ok(Json(answer).into_response())
}

/// `POST …/v1internal:onboardUser`: starts the long-running onboarding operation.
async fn onboard_user(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, Response> {
    let api = Api::CodeAssist;
    let body = api.body(&headers, &body)?;
    let mut state = sim.lock();
    let account = api.bearer_account(&mut state, &headers)?;
    let project = body.get("cloudaicompanionProject").and_then(Value::as_str);
    let tier = body.get("tierId").and_then(Value::as_str);
    let project =
        match (state.code_assist_account(&account), tier, project) {
            (_, None, _) => return Err(api.invalid("tierId: field required")),
            (CodeAssistAccount::NewFreeTier, Some("free-tier"), Some(_)) => return Err(api.error(
                StatusCode::PRECONDITION_FAILED,
                Kind::Invalid,
                "The free tier does not take a project: onboard without cloudaicompanionProject.",
            )),
            (CodeAssistAccount::NewFreeTier, Some("free-tier"), None) => {
                state::gemini_project(&account)
            }
            (CodeAssistAccount::NeedsProject, Some("standard-tier"), Some(project)) => {
                project.to_owned()
            }
            (CodeAssistAccount::NeedsProject, Some("standard-tier"), None) => {
                return Err(api.invalid("cloudaicompanionProject: this tier needs a project"))
            }
            (CodeAssistAccount::SetUp, _, _) => {
                return Err(api.invalid("the account is already onboarded"))
            }
            _ => return Err(api.invalid("tierId: not a tier this account may join")),
        };
    let name = state.start_onboarding(&account, &project);
    Ok(Json(json!({"name": name, "done": false})).into_response())
}

/// `GET …/v1internal/operations/{id}`: the onboarding operation's state.
async fn onboarding_operation(
    sim: Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let api = Api::CodeAssist;
    let mut state = sim.lock();
    let account = api.bearer_account(&mut state, &headers)?;
    let name = format!("operations/{id}");
    match state.poll_onboarding(&account, &name) {
        None => Err(api.error(StatusCode::NOT_FOUND, Kind::Invalid, "no such operation")),
        Some(None) => Ok(Json(json!({"name": name, "done": false})).into_response()),
        Some(Some(project)) => Ok(Json(json!({
            "name": name,
            "done": true,
            "response": {
                "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
                "cloudaicompanionProject": {"id": project, "name": project},
            },
        }))
        .into_response()),
    }
}

/// `generateContent` (`streaming` is `None`) or `streamGenerateContent` (whether `alt=sse`).
fn code_assist_generate(
    sim: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    streaming: Option<bool>,
) -> Result<Response, Response> {
    let api = Api::CodeAssist;
    let body = api.body(headers, body)?;
    let mut state = sim.lock();
    let account = api.bearer_account(&mut state, headers)?;
    let model = model_of(api, &body)?;
    match body.get("project").and_then(Value::as_str) {
        None => return Err(api.invalid("project: field required")),
        Some(project) if project != state.project_of(&account) => {
            return Err(api.error(
                StatusCode::FORBIDDEN,
                Kind::Forbidden,
                "Permission denied on resource project (or it may not exist).",
            ))
        }
        Some(_) => {}
    }
    let said =
        gemini_user_text(body.get("request").and_then(|r| r.get("contents"))).ok_or_else(|| {
            api.invalid("request.contents: at least one user part with text is required")
        })?;
    let slow = api.admit(&mut state, &account)?;
    let text = api.reply(&account, &said);
    if let Some(sse) = streaming {
        if sse {
            state.count_streamed_reply(api.provider(), &account);
        }
        return Ok(gemini_stream(sim, api, &model, &text, sse, slow));
    }
    let reply = Json(json!({
        "response": gemini_response(&model, &text),
        "traceId": format!("sim-trace-{}", wire::random_token(12)),
    }));
    Ok(delayed(reply.into_response(), slow))
}

fn gemini_response(model: &str, text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": text.len(), "totalTokenCount": text.len() + 1},
        "modelVersion": model,
    })
}

/// The text of the last user turn of Gemini `contents` (a missing role means the user).
fn gemini_user_text(contents: Option<&Value>) -> Option<String> {
    contents?
        .as_array()?
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
        .and_then(|c| {
            c.get("parts")?
                .as_array()
                .map(|parts| parts_text(parts, "text"))
        })
        .filter(|text| !text.is_empty())
}

// ---- OpenAI-compatible chat completions ----

fn chat_completions(
    sim: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    api: Api,
) -> Result<Response, Response> {
    let body = api.body(headers, body)?;
    let mut state = sim.lock();
    let account = match api {
        Api::QwenOAuth => api.bearer_account(&mut state, headers)?,
        Api::DashScope => api.bearer_key_account(&state, headers, ChatProvider::Qwen)?,
        _ => api.bearer_key_account(&state, headers, ChatProvider::OpenAi)?,
    };
    let model = model_of(api, &body)?;
    let said = last_user_text(body.get("messages"), "content")
        .ok_or_else(|| api.invalid("messages: at least one user message is required"))?;
    let slow = api.admit(&mut state, &account)?;
    let text = api.reply(&account, &said);
    let id = format!("chatcmpl-sim-{}", wire::random_token(20));
    let created = wire::now_unix();
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        state.count_streamed_reply(api.provider(), &account);
        let chunk = |delta: Value, finish: Value| {
            sse_event(
                None,
                &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
            )
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        let first_delta = events.len();
        for piece in wire::stream_pieces(&text) {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        events.push("data: [DONE]\n\n".to_owned());
        return Ok(sse(sim, api, events, first_delta, slow));
    }
    let reply = Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": said.len(), "completion_tokens": text.len(),
                  "total_tokens": said.len() + text.len()},
    }));
    Ok(delayed(reply.into_response(), slow))
}

// ---- Codex Responses ----

async fn codex_responses(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, Response> {
    let api = Api::Codex;
    let body = api.body(&headers, &body)?;
    let mut state = sim.lock();
    let account = api.bearer_account(&mut state, &headers)?;
    let answer = codex_answer(&sim, &mut state, &account, &headers, &body);
    Ok(with_usage(&mut state, api, &account, answer))
}

/// Answers an authenticated Responses request; refused once a usage window is used up.
fn codex_answer(
    sim: &Shared,
    state: &mut State,
    account: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Result<Response, Response> {
    let api = Api::Codex;
    match wire::header_str(headers, "chatgpt-account-id") {
        None => return Err(api.invalid("chatgpt-account-id header is required")),
        Some(id) if id != state::codex_account_id(account) => {
            return Err(api.error(
                StatusCode::FORBIDDEN,
                Kind::Forbidden,
                "chatgpt-account-id does not match the token's account",
            ))
        }
        Some(_) => {}
    }
    if wire::header_str(headers, "originator") != Some("codex_cli_rs") {
        return Err(api.invalid("originator header must be codex_cli_rs"));
    }
    let model = model_of(api, body)?;
    if !state.cfg().codex_models.contains(&model) {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": format!(
                "The '{model}' model is not supported when using Codex with a ChatGPT account."
            )})),
        )
            .into_response());
    }
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Err(api.invalid("Stream must be set to true"));
    }
    let said = codex_user_text(body.get("input"))
        .ok_or_else(|| api.invalid("input: at least one user message is required"))?;
    let slow = api.admit(state, account)?;
    api.refuse_if_used_up(state, account, slow)?;
    state.count_streamed_reply(api.provider(), account);
    Ok(codex_stream(sim, &model, &api.reply(account, &said), slow))
}

/// An answer of a subscription with the account's usage headers, refusal or not.
fn with_usage(
    state: &mut State,
    api: Api,
    account: &str,
    answer: Result<Response, Response>,
) -> Response {
    let mut answer = answer.unwrap_or_else(|refusal| refusal);
    let windows = state.usage(api.provider(), account);
    usage::add_headers(api.provider(), &windows, &mut answer);
    answer
}

fn codex_user_text(input: Option<&Value>) -> Option<String> {
    match input? {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => items
            .iter()
            .rev()
            .filter(|item| {
                item.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message")
                    == "message"
                    && item.get("role").and_then(Value::as_str) == Some("user")
            })
            .find_map(|item| content_text(item.get("content")?)),
        _ => None,
    }
    .filter(|text| !text.is_empty())
}

fn codex_stream(sim: &Shared, model: &str, text: &str, slow: Option<SlowReply>) -> Response {
    let response_id = format!("resp_sim_{}", wire::random_token(20));
    let item_id = format!("msg_sim_{}", wire::random_token(20));
    let item = |status: &str, content: Value| {
        json!({"id": item_id, "type": "message", "role": "assistant", "status": status,
               "content": content})
    };
    let done_item = item(
        "completed",
        json!([{"type": "output_text", "text": text, "annotations": []}]),
    );
    let mut events = vec![
        sse_event(
            Some("response.created"),
            &json!({"type": "response.created", "response": {
                "id": response_id, "object": "response", "status": "in_progress",
                "model": model, "output": []}}),
        ),
        sse_event(
            Some("response.output_item.added"),
            &json!({"type": "response.output_item.added", "output_index": 0,
                    "item": item("in_progress", json!([]))}),
        ),
    ];
    let first_delta = events.len();
    for piece in wire::stream_pieces(text) {
        events.push(sse_event(
            Some("response.output_text.delta"),
            &json!({"type": "response.output_text.delta", "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": piece}),
        ));
    }
    events.push(sse_event(
        Some("response.output_text.done"),
        &json!({"type": "response.output_text.done", "item_id": item_id,
                "output_index": 0, "content_index": 0, "text": text}),
    ));
    events.push(sse_event(
        Some("response.output_item.done"),
        &json!({"type": "response.output_item.done", "output_index": 0, "item": done_item}),
    ));
    events.push(sse_event(
        Some("response.completed"),
        &json!({"type": "response.completed", "response": {
            "id": response_id, "object": "response", "status": "completed", "model": model,
            "output": [done_item],
            "usage": {"input_tokens": 1, "output_tokens": text.len(),
                      "total_tokens": text.len() + 1}}}),
    ));
    sse(sim, Api::Codex, events, first_delta, slow)
}

// ---- shared shapes ----

/// The text of the last `role: user` message of an Anthropic or OpenAI message list.
fn last_user_text(messages: Option<&Value>, content_field: &str) -> Option<String> {
    messages?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| content_text(m.get(content_field)?))
        .filter(|text| !text.is_empty())
}

/// Text content: a string, or the text of a list of `{type: text|input_text, text}` blocks.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => Some(parts_text(blocks, "text")),
        _ => None,
    }
}

fn parts_text(parts: &[Value], field: &str) -> String {
    parts
        .iter()
        .filter_map(|p| p.get(field).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

fn sse_event(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// A `text/event-stream` answer sent one event per chunk. A wait `slow` imposes comes before
/// the whole answer, after the event at `first_delta` (the first piece of text), before each
/// piece after it, or after the first piece and before `api`'s mid-stream failure, as it says.
fn sse(
    sim: &Shared,
    api: Api,
    events: Vec<String>,
    first_delta: usize,
    slow: Option<SlowReply>,
) -> Response {
    let (delay, pause) = slow.map_or((Duration::ZERO, Pause::BeforeReply), |s| (s.delay, s.pause));
    let mut schedule: Vec<(Duration, String)> = Vec::with_capacity(events.len() + 1);
    for (index, event) in events.into_iter().enumerate() {
        let wait_before = match pause {
            Pause::AfterFirstDelta if index == first_delta + 1 => delay,
            Pause::BetweenPieces if index > first_delta => delay,
            _ => Duration::ZERO,
        };
        if pause == Pause::FailAfterFirstDelta && index > first_delta {
            schedule.push((delay, api.stream_failure()));
            break;
        }
        schedule.push((wait_before, event));
    }
    let released = sim.released.clone();
    // A stream whose wait was cut short by the simulator stopping ends unfinished.
    let chunks =
        futures_util::stream::iter(schedule)
            .then(move |(wait_before, event)| {
                let released = released.clone();
                async move {
                    (wait_before.is_zero() || wait(released, wait_before).await).then_some(event)
                }
            })
            .take_while(|event| std::future::ready(event.is_some()))
            .filter_map(std::future::ready)
            .map(|e| Ok::<_, Infallible>(Bytes::from(e)));
    let response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    match pause {
        Pause::BeforeReply => delayed(response, slow),
        _ => response,
    }
}

// ---- slowed answers ----

/// Marks an answer that [`delay_answers`] holds back for this long.
#[derive(Clone, Copy)]
struct Delay(Duration);

/// `response`, held back by [`delay_answers`] when `slow` says so.
fn delayed(mut response: Response, slow: Option<SlowReply>) -> Response {
    if let Some(slow) = slow {
        response.extensions_mut().insert(Delay(slow.delay));
    }
    response
}

/// Middleware of the chat APIs: sends a [`delayed`] answer once its delay has passed, or a
/// `503` if the simulator stops first.
pub(super) async fn delay_answers(sim: Sim, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(&Delay(delay)) = response.extensions().get::<Delay>() else {
        return response;
    };
    tracing::debug!(?delay, "holding a chat answer back");
    if wait(sim.released.clone(), delay).await {
        response
    } else {
        wire::json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    }
}

/// Waits `delay`; false if the simulator began to stop first (a value sent on `released`, or
/// its sender gone).
async fn wait(mut released: watch::Receiver<()>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = released.changed() => false,
    }
}
