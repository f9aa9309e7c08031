//! Anthropic's Messages API.

use async_trait::async_trait;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::ChatProvider;
use serde_json::json;
use url::Url;

use super::http;
use super::limits::{self, LimitsReader};
use super::sse::{self, SseEvent, Step};

/// The API version every request names.
const API_VERSION: &str = "2023-06-01";

/// The beta that lets the Messages API accept a subscription's OAuth token.
const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The Messages API requires a bound on the reply; this one is generous for a conversation.
const MAX_TOKENS: u32 = 8192;

/// Where the Messages API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicConfig {
    /// The API base (`https://api.anthropic.com` in production).
    pub base_url: Url,
}

/// Sends messages to `POST {base}/v1/messages`, with `x-api-key` or an OAuth bearer token.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    config: AnthropicConfig,
    http: reqwest::Client,
}

impl AnthropicChat {
    /// A client for `config`'s endpoint over a shared HTTP client.
    pub fn new(config: AnthropicConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    async fn post(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        let url = http::endpoint(&self.config.base_url, &["v1", "messages"])?;
        let builder = self
            .http
            .post(url)
            .header("anthropic-version", API_VERSION)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body(request));
        // Only a subscription has windows; an API key's rate-limit headers describe no bucket.
        let (builder, read_limits): (_, LimitsReader) = match auth {
            ChatAuth::ApiKey(key) => (builder.header("x-api-key", key.expose()), limits::none),
            ChatAuth::OAuth { token, .. } => (
                builder
                    .bearer_auth(token.access_token.expose())
                    .header("anthropic-beta", OAUTH_BETA),
                limits::anthropic,
            ),
        };
        let response = http::send_reading(builder, read_limits).await?;
        let limits = read_limits(response.headers());
        // A limit reached mid-stream is reported with the windows the answer's headers gave.
        let streamed = sse::read_stream(response, on_text, interpret)
            .await
            .map_err(|e| http::with_limits(e, limits.clone()))?;
        if !streamed.done {
            return Err(ChatError::Network(
                "the event stream ended before message_stop".to_owned(),
            ));
        }
        Ok(ChatReply {
            text: streamed.text,
            limits,
        })
    }
}

#[async_trait]
impl ChatClient for AnthropicChat {
    fn provider(&self) -> ChatProvider {
        ChatProvider::Anthropic
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        self.post(request, auth, on_text)
            .await
            .map_err(|e| http::redact(e, super::credential(auth)))
    }
}

fn body(request: &ChatRequest) -> serde_json::Value {
    let messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({ "role": role, "content": m.text })
        })
        .collect();
    json!({
        "model": request.model,
        "max_tokens": MAX_TOKENS,
        "messages": messages,
        "stream": true,
    })
}

/// Reads one event of the Messages stream: `content_block_delta` text, `message_stop`, and a
/// mid-stream `error` classified by its type as the same error would be at the start.
fn interpret(event: &SseEvent) -> Result<Step, ChatError> {
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .map_err(|_| http::unreadable("an event's data is not JSON"))?;
    let kind = data
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(&event.event);
    match kind {
        "content_block_delta" => Ok(match data.pointer("/delta/type") {
            // Thinking and tool-input deltas are not the answer's text.
            Some(serde_json::Value::String(t)) if t == "text_delta" => Step::Text(
                data.pointer("/delta/text")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            _ => Step::Other,
        }),
        "message_stop" => Ok(Step::Done(String::new())),
        "error" => {
            let error_type = data
                .pointer("/error/type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            Err(http::classify(
                error_status(error_type),
                None,
                None,
                &event.data,
            ))
        }
        _ => Ok(Step::Other),
    }
}

/// The HTTP status Anthropic gives each error type when it can still send one.
fn error_status(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;

    #[test]
    fn the_body_names_the_model_a_token_bound_and_the_conversation() {
        let request = ChatRequest {
            model: "claude-sonnet-4".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                text: "hi".into(),
            }],
        };
        let body = body(&request);
        assert_eq!(body["model"], "claude-sonnet-4");
        assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["stream"], true);
    }

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn text_deltas_stream_and_other_deltas_do_not() {
        assert_eq!(
            interpret(&event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#
            )),
            Ok(Step::Text("Hel".into()))
        );
        assert_eq!(
            interpret(&event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#
            )),
            Ok(Step::Other)
        );
        assert_eq!(
            interpret(&event("ping", r#"{"type": "ping"}"#)),
            Ok(Step::Other)
        );
        assert_eq!(
            interpret(&event("message_stop", r#"{"type":"message_stop"}"#)),
            Ok(Step::Done(String::new()))
        );
    }

    #[test]
    fn a_mid_stream_error_is_classified_by_its_type() {
        let overloaded = interpret(&event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ));
        assert_eq!(
            overloaded,
            Err(ChatError::Server {
                status: 529,
                message: "Overloaded".into()
            })
        );
        assert!(matches!(
            interpret(&event(
                "error",
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            )),
            Err(ChatError::RateLimited { .. })
        ));
    }
}
